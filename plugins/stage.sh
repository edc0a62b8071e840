#!/usr/bin/env bash
# Builds one lockgate plugin and stages it for a gateway: NAME.wasm (the
# component) and NAME.toml (its plugin.toml) in a plugin directory, NAME being
# the manifest's `name` — what core/host/build.rs does for the bundled plugins.
#
#   plugins/stage.sh PLUGIN [DIR]
#
# PLUGIN: a plugin's crate directory (with Cargo.toml and plugin.toml, inside
# this workspace or anywhere else) or the name of a plugin under plugins/.
# DIR: the gateway's plugin directory ([plugins] directory); default
# ./plugins-dev (config/examples/plugin-dev.toml). Then `kill -HUP` the gateway
# or `POST /api/v1/plugins/NAME/reload` (docs/plugins.md, "Test").
#
# Environment: CARGO (default cargo), CARGO_TARGET_DIR as cargo reads it,
# LOCKGATE_STAGE_PROFILE (default release).
set -euo pipefail

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case "$1" in -h | --help) usage ;; esac

here=$(cd "$(dirname "$0")" && pwd)
cargo=${CARGO:-cargo}
profile=${LOCKGATE_STAGE_PROFILE:-release}
target=wasm32-wasip2
out=${2:-plugins-dev}

die() {
    echo "stage.sh: $*" >&2
    exit 1
}

# The string value of KEY in TABLE of a TOML file ("" for the top level):
# toml_value FILE TABLE KEY.
toml_value() {
    awk -v table="$2" -v key="$3" '
        /^[[:space:]]*\[/ { current = $0; gsub(/[][[:space:]]/, "", current); next }
        current == table && $0 ~ "^[[:space:]]*" key "[[:space:]]*=[[:space:]]*\"" {
            sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
        }' "$1"
}

# The crate directory.
if [ -f "$1/plugin.toml" ]; then
    dir=$(cd "$1" && pwd)
else
    dir=
    while IFS= read -r manifest; do
        if [ "$(toml_value "$manifest" "" name)" = "$1" ]; then
            dir=$(dirname "$manifest")
            break
        fi
    done < <(find "$here" -name plugin.toml -not -path '*/target/*' | sort)
    [ -n "$dir" ] || die "no plugin \`$1\`: give its directory (with plugin.toml) or a name of a plugin under $here"
fi
[ -f "$dir/Cargo.toml" ] || die "$dir has no Cargo.toml"

name=$(toml_value "$dir/plugin.toml" "" name)
[[ "$name" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "$dir/plugin.toml: name \`$name\` is not a plugin name (a-z, 0-9, '-')"
crate=$(toml_value "$dir/Cargo.toml" package name)
[ -n "$crate" ] || die "$dir/Cargo.toml has no [package] name"

# Build it (in its workspace: the lock file is used as it is when there is one).
locked=()
metadata=$("$cargo" metadata --format-version 1 --no-deps --manifest-path "$dir/Cargo.toml")
workspace_root=$(printf '%s' "$metadata" | sed -n 's/.*"workspace_root":"\([^"]*\)".*/\1/p')
target_dir=$(printf '%s' "$metadata" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "cannot find the target directory of $dir"
[ -f "$workspace_root/Cargo.lock" ] && locked=(--locked)
profile_args=(--profile "$profile")
"$cargo" build "${profile_args[@]}" --target "$target" "${locked[@]}" \
    --manifest-path "$dir/Cargo.toml" --lib

profile_dir=$profile
[ "$profile" = dev ] && profile_dir=debug
wasm="$target_dir/$target/$profile_dir/${crate//-/_}.wasm"
[ -f "$wasm" ] || die "the build left no $wasm (is the crate a cdylib?)"

# The manifest may name its component file (`component = "..."`, default NAME.wasm).
component=$(toml_value "$dir/plugin.toml" "" component)
component=${component:-$name.wasm}
[[ "$component" != */* ]] || die "$dir/plugin.toml: component \`$component\` must be a file name"

mkdir -p "$out"
# Component first, manifest last, each replaced in one step: a gateway reloading
# meanwhile sees the old plugin or the new one.
cp "$wasm" "$out/.$component.tmp"
mv "$out/.$component.tmp" "$out/$component"
cp "$dir/plugin.toml" "$out/.$name.toml.tmp"
mv "$out/.$name.toml.tmp" "$out/$name.toml"
echo "staged $name: $out/$component, $out/$name.toml"
