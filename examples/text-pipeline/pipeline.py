"""A text pipeline in plain Python: no Asya imports, no SDK.

normalize -> classify -> judge -> (split | answer)

* ``normalize`` and ``split`` are functions in payload mode (they see only the payload).
* ``Classifier.classify`` is a method of a class built once per runtime (keep models there).
* ``judge`` runs in envelope mode and rewrites the rest of the route at run time, as an LLM judge
  would: questions go to ``answer``, statements to ``split``.
* ``split`` fans out: one result per sentence, each continuing on its own.
"""
import re


def normalize(payload):
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("payload needs a non-empty 'text' string")
    return {"text": re.sub(r"\s+", " ", text).strip()}


class Classifier:
    def __init__(self, question_words=("who", "what", "why", "how", "when", "where")):
        # Built once when the runtime starts: the place for expensive set-up (models, clients).
        self.question_words = set(question_words)

    def classify(self, payload):
        text = payload["text"]
        first = text.split(" ", 1)[0].lower()
        label = "question" if text.endswith("?") or first in self.question_words else "statement"
        return {**payload, "label": label}


def judge(envelope):
    """Envelope mode: decide the rest of the route from the data."""
    route = envelope["route"]
    here = route["current"]
    nxt = ["answer"] if envelope["payload"]["label"] == "question" else ["split"]
    route["actors"] = route["actors"][: here + 1] + nxt
    route["current"] = here + 1
    return envelope


def split(payload):
    sentences = [s.strip() for s in re.split(r"(?<=[.!])\s+", payload["text"]) if s.strip()]
    return [{"sentence": s, "index": i, "of": len(sentences)} for i, s in enumerate(sentences)]


def answer(payload):
    return {"question": payload["text"], "answer": "42"}
