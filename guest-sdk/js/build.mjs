#!/usr/bin/env node
// polymongo-js-build: turns a JavaScript plugin into a polymongo component.
//
//   polymongo-js-build src/index.js -o notes.wasm      bundle + componentize
//   polymongo-js-build --types types/                   .d.ts of the WIT world (jco guest types;
//                                                       --world tenant-subscriber for the export)
//
// Options: --wit <dir> (default: the polymongo checkout's wit/ next to this SDK),
//          --bundle <file.js> (where to keep the bundle; default: next to the output),
//          --world <name> (default: from the entry module's exports, see 2. below).
//
// 1. esbuild bundles the entry module with this SDK (`polymongo-guest`) and the npm `bson`
//    package into one ES module (browser platform: bson's build that uses TextEncoder and
//    crypto.getRandomValues, which StarlingMonkey provides). `polymongo:plugin/*` imports stay
//    external: they are the component's imports.
// 2. componentize-js (SpiderMonkey/StarlingMonkey, snapshotted with Wizer) makes the component
//    of the world `tenant-plugin`, or `tenant-subscriber` when the entry module exports
//    `subscriber` (a plugin with `[[subscriptions]]`, `exportSubscriber`; `--world` forces
//    one), with `--disable http fetch-event`: the host offers no wasi:http, and a component
//    importing it would not link.
//
// Module initialisation runs at build time inside Wizer, where no import may be called: the
// bundle therefore starts with `Math.random` stubbed (bson seeds its ObjectId counter with it
// at load time); the SDK restores it and re-seeds bson on the first request. Plugins must not
// call `Math.random`, `crypto` or `Date.now()` at module top level either: do it in handlers.

import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";
import { createRequire } from "node:module";
import { copyFile, mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, resolve, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

const BANNER =
  "globalThis.__polymongoRandom = Math.random; Math.random = () => 0; // restored by polymongo-guest";

function usage(message) {
  if (message) console.error(`polymongo-js-build: ${message}`);
  console.error(
    "usage: polymongo-js-build <entry.js> -o <out.wasm> [--wit <dir>] [--bundle <file.js>] [--world <name>]",
  );
  console.error("       polymongo-js-build --types <out-dir> [--wit <dir>] [--world <name>]");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { wit: resolve(here, "../../wit") };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => argv[++i] ?? usage(`${a} needs a value`);
    if (a === "-o" || a === "--out") opts.out = resolve(value());
    else if (a === "--wit") opts.wit = resolve(value());
    else if (a === "--bundle") opts.bundle = resolve(value());
    else if (a === "--types") opts.types = resolve(value());
    else if (a === "--world") opts.world = value();
    else if (a === "-h" || a === "--help") usage();
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (opts.entry) usage(`unexpected argument ${a}`);
    else opts.entry = resolve(a);
  }
  return opts;
}

/**
 * The WIT folder to build against: `wit/` (polymongo:plugin@0.1.0) as it is, or, when it has
 * the 0.2.0 package in `v0.2/` (change streams), a temporary folder whose main package is 0.2.0
 * with 0.1.0 as its dependency (componentize-js and jco take one folder).
 */
async function witFolder(wit) {
  const v2 = join(wit, "v0.2");
  let names;
  try {
    names = (await readdir(v2)).filter((n) => n.endsWith(".wit"));
  } catch {
    return wit;
  }
  const tmp = await mkdtemp(join(tmpdir(), "polymongo-wit-"));
  const dep = join(tmp, "deps", "polymongo-plugin-0.1.0");
  await mkdir(dep, { recursive: true });
  for (const n of names) await copyFile(join(v2, n), join(tmp, n));
  for (const n of (await readdir(wit)).filter((n) => n.endsWith(".wit"))) {
    await copyFile(join(wit, n), join(dep, n));
  }
  return tmp;
}

/** The worlds a plugin can be built for, by the export that makes the difference. */
const PLUGIN_WORLD = "tenant-plugin";
const SUBSCRIBER_WORLD = "tenant-subscriber";

/**
 * The world for a bundle with `exports` (esbuild's metafile): `tenant-subscriber` when it
 * exports `subscriber` (the WIT export of a plugin with `[[subscriptions]]`), else
 * `tenant-plugin`. `forced` (`--world`) wins.
 */
function chooseWorld(exports, forced) {
  if (forced) return forced;
  return exports.includes("subscriber") ? SUBSCRIBER_WORLD : PLUGIN_WORLD;
}

async function component(opts) {
  if (!opts.entry || !opts.out) usage("give the entry module and -o <out.wasm>");
  const bundle = opts.bundle ?? opts.out.replace(/\.wasm$/, "") + ".bundle.js";
  await mkdir(dirname(bundle), { recursive: true });
  const bundled = await build({
    metafile: true,
    entryPoints: [opts.entry],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: bundle,
    alias: { "polymongo-guest": join(here, "src/index.js") },
    external: ["polymongo:*", "wasi:*"],
    banner: { js: BANNER },
    logLevel: "warning",
  });
  const output = Object.entries(bundled.metafile.outputs).find(([, o]) => o.entryPoint);
  const worldName = chooseWorld(output ? output[1].exports : [], opts.world);
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: await witFolder(opts.wit),
    worldName,
    disableFeatures: ["http", "fetch-event"],
  });
  await mkdir(dirname(opts.out), { recursive: true });
  await writeFile(opts.out, component);
  console.log(
    `polymongo-js-build: ${opts.out} (world ${worldName}, ${(component.length / 1048576).toFixed(1)} MiB)`,
  );
}

async function types(opts) {
  // jco's type generator runs as a component under preview2-shim, whose filesystem has no
  // preopens by default (shim 0.26): give it the host's root before generating.
  const require = createRequire(import.meta.url);
  const transpile = require.resolve("@bytecodealliance/jco-transpile");
  const shim = createRequire(transpile).resolve("@bytecodealliance/preview2-shim/filesystem");
  const { _setPreopens } = await import(pathToFileURL(shim).href);
  _setPreopens({ "/": "/" });
  const { generateGuestTypes } = await import(pathToFileURL(transpile).href);
  const files = await generateGuestTypes(await witFolder(opts.wit), {
    worldName: opts.world ?? PLUGIN_WORLD,
    guest: true,
    outDir: opts.types.endsWith("/") ? opts.types : opts.types + "/",
  });
  for (const [path, bytes] of Object.entries(files)) {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  }
  console.log(`polymongo-js-build: ${Object.keys(files).length} type files in ${opts.types}`);
}

const opts = parseArgs(process.argv.slice(2));
try {
  if (opts.types) await types(opts);
  else await component(opts);
} catch (e) {
  console.error(`polymongo-js-build: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
