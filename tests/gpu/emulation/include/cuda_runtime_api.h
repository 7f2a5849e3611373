// Emulation: the CUDA runtime header maps to the emulation shim.
#pragma once
#include "emu.h"
