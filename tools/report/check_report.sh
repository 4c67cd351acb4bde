#!/usr/bin/env bash
# Opens a run's report.html in headless Chromium (Debian's `chromium` package) and checks that
# the page renders: every plot the page declares is in the rendered DOM with a drawn SVG or
# table, and the browser logs no console error. Writes a full-page screenshot beside it.
#
#   tools/report/check_report.sh RUN [SCREENSHOT]      (default RUN/report.png)
#
# Exit status 0 when the page passes; the plot kinds found are printed.
set -euo pipefail
run=$1
page=$(realpath "$run/report.html")
shot=${2:-$run/report.png}
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }
flags=(--headless=new --no-sandbox --disable-gpu --hide-scrollbars --enable-logging=stderr --v=0)
log=$(mktemp)
dom=$(mktemp)
trap 'rm -f "$log" "$dom"' EXIT
timeout 120 "$browser" "${flags[@]}" --dump-dom "file://$page" >"$dom" 2>"$log"
timeout 120 "$browser" "${flags[@]}" --window-size=1200,5000 --screenshot="$(realpath -m "$shot")" "file://$page" 2>>"$log" >/dev/null
declared=$(grep -o 'data-plot="[a-z_]*"' "$page" | sort | uniq -c)
rendered=$(grep -o 'data-plot="[a-z_]*"' "$dom" | sort | uniq -c)
echo "plots in the page:"
echo "$declared"
status=0
if [[ "$declared" != "$rendered" ]]; then
    echo "FAIL: the rendered DOM has other plots than the page:" >&2
    echo "$rendered" >&2
    status=1
fi
[[ -n "$declared" ]] || { echo "FAIL: no plots" >&2; status=1; }
svgs=$(grep -c '<svg' "$dom" || true)
echo "SVG elements rendered: $svgs"
if grep -E 'CONSOLE|Uncaught' "$log" >&2; then
    echo "FAIL: console messages above" >&2
    status=1
fi
echo "screenshot: $shot"
exit $status
