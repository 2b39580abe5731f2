#!/usr/bin/env bash
# Rebuild the trimmed Bootstrap the pages load (issue 22): only the CSS rules Hangar's
# templates and code use (PurgeCSS over Bootstrap's own bootstrap.min.css), and only the
# two scripts they use (collapse for the navbar toggler, dropdown for the menus), bundled
# with esbuild from the npm package. Run by hand after adding Bootstrap classes that no
# template, script or .py file names; the outputs are committed (`make run` and CI never
# need npm). Needs node and npm (Debian's), and the npm registry.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/static/vendor/bootstrap-5.3.9"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm init -y > /dev/null
npm install --no-audit --no-fund --silent \
  bootstrap@5.3.9 @popperjs/core@2.11.8 purgecss@8.0.0 esbuild@0.28.2
printf "import 'bootstrap/js/dist/collapse';\nimport 'bootstrap/js/dist/dropdown';\n" > entry.js
npx esbuild entry.js --bundle --minify --format=iife --legal-comments=none \
  --banner:js="/*! Bootstrap v5.3.9 collapse + dropdown, with Popper 2.11.8 (MIT) */" \
  --outfile="$OUT/bootstrap.trimmed.min.js"
cd "$ROOT"
"$WORK/node_modules/.bin/purgecss" --config scripts/assets/purgecss.config.cjs \
  --css "$WORK/node_modules/bootstrap/dist/css/bootstrap.min.css" --output "$WORK/css"
{ echo "/*! Bootstrap v5.3.9 (MIT), the rules Hangar uses (scripts/build-assets.sh) */"; \
  cat "$WORK/css/bootstrap.min.css"; } > "$OUT/bootstrap.trimmed.min.css"
ls -l "$OUT"/bootstrap.trimmed.min.*
