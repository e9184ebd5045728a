#!/usr/bin/env bash
# 030 — every graph object the builder makes from a fixture of awkward cases validates
# against the JupiterOne data model (@jupiterone/data-model's class schemas, with Ajv), and
# the builder's output is deterministic and byte for byte the recorded canonical text
# (graph_dump.ndjson, graph_dump-placeholder.ndjson beside this file): those bytes are what
# the sync hashes and stores, so a builder change that alters them would change every stored
# hash on upgrade.
#
# The node packages are pinned in tests/package.json / package-lock.json and installed into
# tests/node_modules (git-ignored) on first use (need_datamodel in lib.sh). Without network
# access that install fails, and so does this test, loudly and within about two minutes: a
# data-model check that silently skips would be worse than none.
. "$(dirname "$0")/lib.sh"
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
ROOT=$(cd "$TESTS_DIR/.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
dump="$BUILD/graph_dump"
work=$WORK

[ -x "$dump" ] || { echo "030: $dump not built (run make)" >&2; exit 1; }
need_datamodel

"$dump" >"$work/a.ndjson"
"$dump" >"$work/b.ndjson"
"$dump" --placeholder >"$work/p.ndjson"
# Same input, same objects, same order, same bytes.
cmp "$work/a.ndjson" "$work/b.ndjson"
# The recorded bytes, before the builder wrote canonical JSON itself.
for f in a:graph_dump p:graph_dump-placeholder; do
	cmp "$work/${f%%:*}.ndjson" "$TESTS_DIR/e2e/${f#*:}.ndjson" ||
		{ echo "030: graph_dump output differs from tests/e2e/${f#*:}.ndjson" >&2; exit 1; }
done
# The placeholder option changes only skipTargetCreation of PROTECTS-server relationships.
[ "$(diff "$work/a.ndjson" "$work/p.ndjson" | grep -c '^<')" -ge 1 ]
if diff "$work/a.ndjson" "$work/p.ndjson" | grep '^[<>]' | grep -v 'threatstack_agent_protects_server'; then
	echo "030: --placeholder changed more than the PROTECTS-server relationships" >&2
	exit 1
fi

node "$TESTS_DIR/datamodel/validate.js" "$work/a.ndjson"
node "$TESTS_DIR/datamodel/validate.js" "$work/p.ndjson"

# The validator itself must catch a bad object: a HostAgent without function, a Finding with
# a property name outside the pattern, an agent with a null name.
head -n 2 "$work/a.ndjson" >"$work/bad.ndjson"
node -e '
const fs = require("fs");
const [src, dst] = process.argv.slice(1);
const objs = fs.readFileSync(src, "utf8").trim().split("\n").map(JSON.parse);
const agent = objs.find((o) => o._class === "HostAgent");
const a1 = Object.assign({}, agent, { _key: agent._key + "-1" }); delete a1.function;
const a2 = Object.assign({}, agent, { _key: agent._key + "-2", name: null });
const a3 = Object.assign({}, agent, { _key: agent._key + "-3", "tag.a_b": "x" });
fs.writeFileSync(dst, [a1, a2, a3].map((o) => JSON.stringify(o)).join("\n") + "\n");
' "$work/a.ndjson" "$work/bad.ndjson"
if node "$TESTS_DIR/datamodel/validate.js" "$work/bad.ndjson" >"$work/bad.log" 2>&1; then
	echo "030: the validator accepted invalid objects" >&2
	cat "$work/bad.log" >&2
	exit 1
fi
for want in "required property 'function'" "name is null" "tag.a_b"; do
	grep -q "$want" "$work/bad.log" || { echo "030: validator did not report: $want" >&2; cat "$work/bad.log" >&2; exit 1; }
done
echo "030: ok"
