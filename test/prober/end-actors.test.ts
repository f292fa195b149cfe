/** Delivery prober, end actors (issue 14): every envelope id ends as exactly one object in S3, through an S3 outage. */
import { scenarioTests } from './run-scenarios.js'

scenarioTests(['end-actors'])
