/* SPDX-License-Identifier: MIT */
#ifndef SHMRIG_BENCH_SUITE_H
#define SHMRIG_BENCH_SUITE_H

/*
 * The shmrig-bench suite: one file per area, bench/bench_<name>.c, each
 * providing bench_<name>_register(), which registers that area's benchmarks
 * with gbench_register() (gbench.h). main.c calls it before gbench_main() when
 * bench/meson.build found the file and defined HAVE_BENCH_<NAME>.
 */

void bench_pool_register(void);
void bench_codec_register(void);
void bench_channel_register(void);

#endif
