// Run after the browser tests (`npm test`): fails if anything they started still runs:
// a daas, its PostgreSQL, a session's wrapper or sandbox, or what runs in a session
// (Xvnc, JupyterLab, a kernel: those are known by their mounts from target/e2e, as their
// command lines and working folders name only paths inside the sandbox). Then kills what
// it found, so that the next run starts clean.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { killUnder, processesUnder, sleepSync } from "./processes.mjs";

// harness.mjs's `e2eDir`, without loading the provider and the browser driver.
const e2eDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../target/e2e");

// An interrupted runner does not wait for its test files: give their clean-up a moment.
let left = processesUnder(e2eDir);
for (const deadline = Date.now() + 30_000; left.length > 0 && Date.now() < deadline; left = processesUnder(e2eDir)) {
  sleepSync(500);
}
if (left.length === 0) {
  console.log(`# nothing the browser tests started is left running (under ${e2eDir})`);
} else {
  console.error(`# the browser tests left ${left.length} processes running (under ${e2eDir}):`);
  for (const p of left) console.error(`#   ${p.pid} (${p.why}): ${p.args.join(" ").slice(0, 200)}`);
  killUnder(e2eDir);
  process.exitCode = 1;
}
