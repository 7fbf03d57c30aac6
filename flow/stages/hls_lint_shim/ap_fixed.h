#include "ap_lint_shim.h"
