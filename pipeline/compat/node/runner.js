// onnxruntime-node's worker for `make compat`: the same contract as ../runner.py.
//   node runner.js MODULES_DIR --rows ROWS --input X.f32 --out DIR NAME=MODEL.onnx ...
// Runs each model at every graph optimization level and writes DIR/report.json.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const N_FEATURES = 8;
// null: a session created with no options at all, as a user would write it.
const LEVELS = [null, "disabled", "basic", "extended", "layout", "all"];

function parseArgs(argv) {
  const [modulesDir, ...rest] = argv;
  const args = { modulesDir, models: [] };
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--rows") args.rows = Number(rest[++i]);
    else if (rest[i] === "--input") args.input = rest[++i];
    else if (rest[i] === "--out") args.out = rest[++i];
    else args.models.push(rest[i]);
  }
  return args;
}

// The error on one line, its start and its end, as ../runner.py shortens it.
function oneLine(err, keep = 200) {
  let text = String(err && err.message ? err.message : err).split(/\s+/).join(" ");
  if (text.length > 2 * keep) text = `${text.slice(0, keep)} ... ${text.slice(-keep)}`;
  return `${(err && err.name) || "Error"}: ${text}`;
}

async function predict(ort, modelPath, X, rows, level) {
  const session = level === null ? await ort.InferenceSession.create(modelPath)
    : await ort.InferenceSession.create(modelPath, { graphOptimizationLevel: level, executionProviders: ["cpu"] });
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", X, [rows, N_FEATURES]) };
  const out = (await session.run(feeds))[session.outputNames[0]];
  return out.data;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pkg = path.resolve(args.modulesDir, "node_modules", "onnxruntime-node");
  const ort = require(pkg);
  const version = require(path.join(pkg, "package.json")).version;
  const buf = fs.readFileSync(args.input);
  const X = new Float32Array(buf.buffer, buf.byteOffset, args.rows * N_FEATURES);
  const results = [];
  for (const spec of args.models) {
    const at = spec.indexOf("=");
    const [name, modelPath] = [spec.slice(0, at), spec.slice(at + 1)];
    for (const level of LEVELS) {
      const setting = level === null ? "default" : `graphOptimizationLevel=${level}`;
      const result = { model: name, setting };
      try {
        const got = await predict(ort, modelPath, X, args.rows, level);
        if (got.length !== args.rows) throw new Error(`${got.length} predictions for ${args.rows} rows`);
        const target = path.join(args.out, `${name}.${level || "default"}.f32`);
        fs.writeFileSync(target, Buffer.from(got.buffer, got.byteOffset, got.byteLength));
        result.predictions = target;
      } catch (err) {
        result.error = oneLine(err);
      }
      results.push(result);
    }
  }
  fs.writeFileSync(path.join(args.out, "report.json"), JSON.stringify({ engine: "onnxruntime-node", version, results }));
}

main().catch((err) => { process.stderr.write(oneLine(err) + "\n"); process.exit(1); });
