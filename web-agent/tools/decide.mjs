// For the end-to-end suite: the page's decision for each (status, code) given as JSON on
// the command line, so that it can be compared with the native agent's table.
import { decide, Failure } from "../src/api.js";

const cases = JSON.parse(process.argv[2]);
console.log(JSON.stringify(cases.map(([status, code]) => decide(new Failure(status, code, "")))));
