// Compares conformance results of the same suite run directly against the
// fixture server and through passgate's gateway (scripts/test.d/
// 20-conformance.sh): the pass count must be the same, and so must every
// check's status. Prints both counts and every check that differs.
//
// Usage: node compare-runs.mjs <direct results dir> <gateway results dir> [<direct> <gateway>]...
import fs from "node:fs";
import path from "node:path";

function statuses(dir) {
  const out = new Map();
  out.passed = 0;
  out.why = new Map();
  if (!fs.existsSync(dir)) return out;
  for (const scenario of fs.readdirSync(dir).sort()) {
    const file = path.join(dir, scenario, "checks.json");
    if (!fs.existsSync(file)) continue;
    // The suite names each result directory with the time it ran.
    const name = scenario.replace(/-\d{4}-\d{2}-\d{2}T[\d-]+Z$/, "");
    for (const check of JSON.parse(fs.readFileSync(file, "utf8"))) {
      // A check id may repeat within a scenario: number the repeats.
      let key = `${name}: ${check.id}`;
      for (let n = 2; out.has(key); n++) key = `${name}: ${check.id} #${n}`;
      out.set(key, check.status);
      if (check.status !== "SUCCESS") out.why.set(key, (check.errorMessage || check.description || "").slice(0, 300));
      if (check.status === "SUCCESS") out.passed += 1;
    }
  }
  return out;
}

const pairs = process.argv.slice(2);
if (pairs.length === 0 || pairs.length % 2) {
  console.error("usage: node compare-runs.mjs <direct dir> <gateway dir> [...]");
  process.exit(2);
}
let same = true;
for (let i = 0; i < pairs.length; i += 2) {
  const [direct, gateway] = [statuses(pairs[i]), statuses(pairs[i + 1])];
  const passed = (m) => m.passed;
  const name = path.basename(pairs[i + 1]);
  console.log(
    `${name}: ${passed(gateway)} of ${gateway.size} checks pass through the gateway, ` +
      `${passed(direct)} of ${direct.size} directly`,
  );
  if (passed(direct) !== passed(gateway)) same = false;
  if (direct.size === 0) {
    console.log(`  no checks in ${pairs[i]}`);
    same = false;
  }
  for (const key of new Set([...direct.keys(), ...gateway.keys()])) {
    if (direct.get(key) !== gateway.get(key)) {
      console.log(`  ${key}: ${direct.get(key) ?? "absent"} directly, ${gateway.get(key) ?? "absent"} through the gateway`);
      for (const [where, m] of [["directly", direct], ["through the gateway", gateway]]) {
        if (m.why.has(key)) console.log(`    ${where}: ${m.why.get(key)}`);
      }
      same = false;
    }
  }
}
process.exit(same ? 0 : 1);
