// Applies an --expected-failures baseline to every scenario in a results
// directory (the suite's -o output), including the scenarios a requirement
// set runs without scoring: under --requirements the suite judges only the
// scored ones, so baseline entries for the others would otherwise be
// decoration. Same rules as the suite: a check with status FAILURE or
// WARNING fails; an entry is `scenario` or `scenario:check-id`; a failure
// not in the baseline, or an entry that no longer fails, fails the run.
//
// usage: node tests/conformance/check-baseline.mjs RESULTS_DIR BASELINE.yml
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

// The yaml package comes with the suite in tests/js.
const require = createRequire(new URL('../js/package.json', import.meta.url));
const { parse } = require('yaml');

const [resultsDir, baselinePath] = process.argv.slice(2);
if (!resultsDir || !baselinePath) {
  console.error('usage: check-baseline.mjs RESULTS_DIR BASELINE.yml');
  process.exit(2);
}

const entries = (parse(readFileSync(baselinePath, 'utf8')) ?? {}).server ?? [];
const whole = new Set();
const perCheck = new Map();
for (const raw of entries) {
  const entry = String(raw);
  const colon = entry.indexOf(':');
  if (colon === -1) {
    whole.add(entry);
  } else {
    const scenario = entry.slice(0, colon);
    if (!perCheck.has(scenario)) perCheck.set(scenario, new Set());
    perCheck.get(scenario).add(entry.slice(colon + 1));
  }
}

// Directories are named server-<scenario>-<ISO time with : and . as ->.
const dirName = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const results = new Map();
for (const name of readdirSync(resultsDir).sort()) {
  const match = dirName.exec(name);
  const file = join(resultsDir, name, 'checks.json');
  if (!match || !statSync(join(resultsDir, name)).isDirectory()) continue;
  results.set(match[1], JSON.parse(readFileSync(file, 'utf8')));
}

const fails = (check) => check.status === 'FAILURE' || check.status === 'WARNING';
const unexpected = [];
const stale = [];
const expected = [];
for (const [scenario, checks] of results) {
  if (whole.has(scenario)) {
    if (checks.some(fails)) expected.push(scenario);
    else stale.push(`${scenario} (passes now)`);
    continue;
  }
  const excused = perCheck.get(scenario) ?? new Set();
  for (const check of checks.filter(fails)) {
    (excused.has(check.id) ? expected : unexpected).push(`${scenario}:${check.id}`);
  }
  for (const id of excused) {
    if (!checks.some((c) => c.id === id && fails(c))) stale.push(`${scenario}:${id} (passes now)`);
  }
}
for (const scenario of [...whole, ...perCheck.keys()]) {
  if (!results.has(scenario)) stale.push(`${scenario} (did not run)`);
}

console.log(
  `baseline check over ${results.size} scenarios: ${expected.length} expected failure(s), ` +
    `${unexpected.length} unexpected, ${stale.length} stale`,
);
for (const s of unexpected) console.log(`  unexpected failure: ${s}`);
for (const s of stale) console.log(`  stale baseline entry, remove it: ${s}`);
process.exit(unexpected.length > 0 || stale.length > 0 ? 1 : 0);
