#!/bin/sh
# A FAKE shmrig-stress for testing shmrig-plan --verify's comparison logic only
# (tests/meson.build, plan_cli_verify_fake_*): it runs nothing and writes a fixed
# result in the shmrig-stress --workload JSON contract. For verify_constant.json
# (1000/s of 64 B held 20 ms: 20 blocks live) it reports 20 x $FAKE_STRESS_SKEW
# live blocks (default 1), the offered rate achieved up to --rate-scale 2 and half
# of it from 4 on (the stepping's saturation). FAKE_STRESS_FAIL=1: exit 1.
# FAKE_STRESS_OWN_US=N: the replay's own work, N us a message, all in the consumer.
set -eu
scale=1 out=
while [ $# -gt 0 ]; do
	case "$1" in
	--rate-scale) scale=$2; shift 2 ;;
	--json) out=$2; shift 2 ;;
	--workload | --duration | --seed) shift 2 ;;
	*) echo "fake-stress: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ "${FAKE_STRESS_FAIL:-0}" = 1 ] && { echo "fake-stress: failing as asked" >&2; exit 1; }
[ -n "$out" ] || { echo "fake-stress: --json OUT missing" >&2; exit 2; }
skew=${FAKE_STRESS_SKEW:-1}
own=${FAKE_STRESS_OWN_US:-0}
awk -v scale="$scale" -v skew="$skew" -v own="$own" 'BEGIN {
	offered = 1000 * scale; achieved = scale >= 4 ? offered / 2 : offered * 0.99
	printf "{\"kind\":\"shmrig-stress-workload\",\"workload\":\"verify_constant\",\"duration_s\":1,"
	printf "\"rate_scale\":%g,\"seed\":1,\"offered_rate\":%g,\"achieved_rate\":%g,", scale, offered, achieved
	printf "\"messages\":%d,\"enomem\":0,\"checksum_failures\":0,\"lost_blocks\":0,", achieved
	printf "\"latency_us\":{\"p50\":5,\"p99\":%g,\"p999\":40,\"max\":90},", 20 * scale
	printf "\"sample_interval_ms\":10,\"samples\":100,"
	printf "\"replay_own_us_per_message\":%g,\"replay_own_producer_us_per_message\":0,", own
	printf "\"classes\":[{\"class\":0,\"block_size\":64,\"live_mean\":%g,\"live_p99\":%g,\"live_p999\":%g,\"live_max\":%g}],", 20 * skew, 21 * skew, 21 * skew, 22 * skew
	printf "\"large\":{\"live_mean\":0,\"live_p99\":0,\"live_max\":0},"
	printf "\"flows\":[{\"name\":\"steady\",\"offered_rate\":%g,\"achieved_rate\":%g,\"latency_us\":{\"p50\":5,\"p99\":20}}],", offered, achieved
	printf "\"occupancy\":[[0.5,20,1280],[1.0,20,1280]]}\n"
}' > "$out"
