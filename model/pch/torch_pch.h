// SPDX-License-Identifier: MIT
// Precompiled header for the translation units that use LibTorch: <torch/torch.h> alone takes
// ~20 s to parse here, once per file without this.
#include <torch/torch.h>
