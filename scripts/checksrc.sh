#!/usr/bin/env bash
# checksrc: refuses banned C functions (CONVENTIONS.md "Mechanics"), like
# curl's checksrc. Raw allocation is allowed only inside common/mem.c.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
files=$(git ls-files '*.c' '*.h' 2>/dev/null; find . -path ./build\* -prune -o -path ./.tools -prune -o \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||')
files=$(printf '%s\n' $files | sort -u)
bad=0
for f in $files; do
  [ -f "$f" ] || continue
  out=$(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strncpy|system|popen)[[:space:]]*\(' "$f" | grep -vE '(snprintf|vsnprintf|asprintf)\(' )
  if [ -n "$out" ]; then
    printf '%s:%s\n' "$f" "$out" | sed 's/^/checksrc: banned function: /'
    bad=1
  fi
  case "$f" in common/mem.c) ;; *)
    out=$(grep -nE '(^|[^a-z_])(malloc|calloc|realloc|strdup|strndup)[[:space:]]*\(' "$f")
    if [ -n "$out" ]; then
      printf '%s:%s\n' "$f" "$out" | sed 's/^/checksrc: raw allocation (use x* from common\/mem.h): /'
      bad=1
    fi;;
  esac
done
[ "$bad" = 0 ] && echo "checksrc: ok ($(printf '%s\n' $files | wc -l) files)"
exit $bad
