#!/bin/bash
# The node bundle's driver (shipped by dhctl, run as root): runs every step under steps/ in order.
# A step whose rendered content is unchanged since it last succeeded is skipped, so a re-run after
# a failure re-runs only what changed or failed. Lines starting with "::step" are read by dhctl.
set -Euo pipefail
bundle=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
state=${DHCTL_BASHIBLE_STATE:-/var/lib/dhctl/bashible} # overridable for tests
mkdir -p "$state/done" "$state/log"
chmod 0700 "$state"
# One run at a time on a node: a second dhctl against the same host waits, then gives up.
lock_wait=${DHCTL_BASHIBLE_LOCK_WAIT:-60}
exec 9>"$state/lock"
if ! flock -w "$lock_wait" 9; then
	echo "::step lock failed 1 0"
	echo "::tail another run of the node bundle has held $state/lock for ${lock_wait}s; wait for it to finish"
	exit 1
fi
for step in "$bundle"/steps/*.sh; do
	name=$(basename "$step" .sh)
	sum=$(sha256sum "$step" | cut -d' ' -f1)
	if [[ -f "$state/done/$name" && "$(cat "$state/done/$name")" == "$sum" ]]; then
		echo "::step $name skipped"
		continue
	fi
	rm -f "$state/done/$name"
	echo "::step $name started"
	start=$(date +%s%N)
	bash "$step" 2>&1 | tee "$state/log/$name.log"
	rc=${PIPESTATUS[0]}
	ms=$((($(date +%s%N) - start) / 1000000))
	if ((rc != 0)); then
		echo "::step $name failed $rc $ms"
		tail -n 20 "$state/log/$name.log" | sed 's/^/::tail /'
		exit "$rc"
	fi
	echo "$sum" >"$state/done/$name"
	echo "::step $name done $ms"
done
echo "::bundle done"
