/* SPDX-License-Identifier: MIT */
// Static registration of the plugin, for programs and tests that link the elements directly
// (no registry, no plugin scanner).
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
gboolean autoassign_gst_register_static(void);
G_END_DECLS
