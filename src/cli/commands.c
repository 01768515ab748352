/* The table of tools in the multi-call binary: the name each is installed as. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_command commands[] = {
    {"qvm-ls", qvm_ls_main},
    {"qvm-prefs", qvm_prefs_main},
    {"qubes-prefs", qubes_prefs_main},
    {"qvm-features", qvm_features_main},
    {"qvm-tags", qvm_tags_main},
    {"qvm-clone", qvm_clone_main},
    {"qvm-notes", qvm_notes_main},
    {"qvm-volume", qvm_volume_main},
    {"qvm-firewall", qvm_firewall_main},
    {"qvm-create", qvm_create_main},
    {"qvm-remove", qvm_remove_main},
    {"qvm-events", qvm_events_main},
    {"qvm-start", qvm_start_main},
    {"qvm-shutdown", qvm_shutdown_main},
    {"qvm-kill", qvm_kill_main},
    {"qvm-check", qvm_check_main},
    {"qvm-service", qvm_service_main},
    {"dispenser-preload", dispenser_preload_main},
    {"qvm-pause", qvm_pause_main},
    {"qvm-unpause", qvm_unpause_main},
    {"qvm-template", qvm_template_main},
    {"qvm-run", qvm_run_main},
    {"qvm-copy-to-vm", qvm_copy_to_vm_main},
    {"qvm-open-in-dvm", qvm_open_in_dvm_main},
    {"qvm-console-dispvm", qvm_console_dispvm_main},
    {"qrexec-client", qrexec_client_main},
    {"qvm-block", qvm_block_main},
    {"qvm-device", qvm_device_main},
    {"qvm-pool", qvm_pool_main},
    {"qvm-clipboard", qvm_clipboard_main},
};

const struct cli_command *cli_command_find(const char *name) {
    for (size_t i = 0; i < ELEMENTSOF(commands); i++)
        if (streq(commands[i].name, name))
            return &commands[i];
    return NULL;
}

void cli_commands_list(FILE *f) {
    for (size_t i = 0; i < ELEMENTSOF(commands); i++)
        fprintf(f, "  %s\n", commands[i].name);
}
