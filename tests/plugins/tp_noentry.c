/* SPDX-License-Identifier: MIT */
/* tp_noentry: a shared object that is no shmrig plugin: it exports another symbol. */
#include <shmrig/plugin.h>

SHMRIG_API_EXPORT int tp_not_a_plugin(void);

SHMRIG_API_EXPORT int tp_not_a_plugin(void)
{
	return SHMRIG_PLUGIN_ABI;
}
