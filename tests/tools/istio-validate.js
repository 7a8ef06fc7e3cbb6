// Strict validation of Istio resources with the JSON schemas of npm @kubernetes-models/istio 2.3.0
// (generated from Istio's CRD OpenAPI schemas; `make tools` installs it into .tools/node).
//
//   node tests/tools/istio-validate.js NODE_MODULES_DIR < docs.json
//
// stdin: JSON array of {file, index, doc}. One line per resource: `OK file[index] Kind/name` or
// `ERROR file[index] Kind/name: details`. Exit 1 if any resource is invalid or of no known kind.
//
// Strict: the shipped schemas allow unknown fields, so every object schema that lists properties
// (and does not preserve unknown fields) is patched to reject others, the way
// `kubectl apply --validate=strict` rejects a misspelt field.
// 2.3.0 (the last CommonJS release) has no networking.istio.io/v1 or security.istio.io/v1
// PeerAuthentication; Istio's v1 APIs have the same schema as v1beta1, which is used for them. Its telemetry.istio.io
// has v1alpha1 only: Istio 1.30.3's Telemetry CRD (manifests/charts/base/files/crd-all.gen.yaml) serves v1 and
// v1alpha1 with one schema, so v1alpha1's is used for v1.
"use strict";
const path = require("path");
const fs = require("fs");

const root = process.argv[2];
if (!root) {
  console.error("usage: istio-validate.js NODE_MODULES_DIR < docs.json");
  process.exit(2);
}
const validate = require(path.join(root, "@kubernetes-models/validate"));
const register = validate.register;
const strictify = (schema) => {
  if (Array.isArray(schema)) return schema.forEach(strictify);
  if (!schema || typeof schema !== "object") return;
  if (schema.properties && schema.additionalProperties === undefined &&
      !schema["x-kubernetes-preserve-unknown-fields"]) {
    schema.additionalProperties = false;
  }
  Object.values(schema).forEach(strictify);
};
validate.register = (id, schema) => { strictify(schema); return register(id, schema); };

const load = (group, version, kind) =>
  require(path.join(root, "@kubernetes-models/istio", group, version, kind))[kind];

let bad = 0;
for (const { file, index, doc } of JSON.parse(fs.readFileSync(0, "utf8"))) {
  const [group, version] = String(doc.apiVersion || "").split("/");
  const where = `${file}[${index}] ${doc.kind}/${(doc.metadata || {}).name}`;
  let Model;
  for (const v of version === "v1" ? ["v1", "v1beta1", "v1alpha1"] : [version]) {
    try { Model = load(group, v, doc.kind); break; } catch (e) { /* try the next version */ }
  }
  if (!Model) {
    console.log(`ERROR ${where}: no schema for ${doc.apiVersion} ${doc.kind}`);
    bad++;
    continue;
  }
  try {
    new Model({ ...doc, apiVersion: Model.apiVersion }).validate();
    console.log(`OK ${where}`);
  } catch (e) {
    const details = (e.errors || []).map((x) =>
      `${x.instancePath || "/"} ${x.message}` +
      (x.params && x.params.additionalProperty ? ` (${x.params.additionalProperty})` : "")).join("; ");
    console.log(`ERROR ${where}: ${details || e.message}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
