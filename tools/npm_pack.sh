# Sourced by the fetch scripts: npm_pack_checked DIR SPEC SHA1 packs the npm package SPEC
# (name@version) into DIR, checks the tarball's SHA-1 against the registry's dist.shasum SHA1, and prints
# the tarball's path. Any failure is one line on stderr naming the package, and exits.
npm_pack_checked() {
  local dir="$1" spec="$2" want="$3" name tarball actual
  name="$(cd "$dir" && npm pack --silent "$spec" | tail -n 1)"
  tarball="$dir/$name"
  [[ -n "$name" && -f "$tarball" ]] || { echo "$(basename "$0"): error: npm pack $spec produced no tarball" >&2; exit 1; }
  actual="$(sha1sum "$tarball" | cut -d' ' -f1)"
  if [[ "$actual" != "$want" ]]; then
    echo "$(basename "$0"): error: $spec has SHA-1 $actual, expected $want" >&2
    exit 1
  fi
  echo "$tarball"
}
