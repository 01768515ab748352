/* qubes-prefs: qvm-prefs for the global (admin.property.*) properties. */
#include "cli.h"

int qubes_prefs_main(int argc, char **argv) { return prefs_main(argc, argv, true); }
