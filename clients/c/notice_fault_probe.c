/* notice_fault_probe [-n] PATH - read a board whose file is truncated under its mapping, on cue.
 *
 * Installs the fault guard (notice_guard_faults) unless -n, opens PATH (notice_open, which checks the file's
 * size once, when it maps it), prints {"event":"mapped","version":V}, then for every line on stdin takes one
 * snapshot with notice_snapshot (which, unlike a follower, does not fstat the file first) and prints
 * {"event":"read","result":NAME,"faults":N,"faulted":true|false}, NAME being "ok" or an error name. Truncate the
 * file between "mapped" and the line, and the read touches vanished pages for certain: with the guard it must
 * report "truncated" with faults caught (one per vanished page touched); with -n the process must die of SIGBUS. That makes the guard's
 * test (clients/sigbus_test.go) deterministic, where a truncation storm only hits a read by chance.
 *
 * Exit status: 0 at the end of stdin; 1 if PATH cannot be opened or the guard cannot be installed
 * ({"error":NAME,...} on stdout); 2 on a usage error. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    notice_board *b = NULL;
    notice_snapshot_t *s = NULL;
    char line[64];
    int guard = 1, rc;

    if (argc == 3 && strcmp(argv[1], "-n") == 0)
        guard = 0;
    else if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: notice_fault_probe [-n] PATH\n");
        return 2;
    }
    if (guard && (rc = notice_guard_faults()) != NOTICE_OK) {
        printf("{\"error\":\"%s\",\"message\":\"installing the SIGBUS guard failed\"}\n", notice_error_name(rc));
        return 1;
    }
    if ((rc = notice_open(argv[argc - 1], &b)) != NOTICE_OK) {
        printf("{\"error\":\"%s\",\"message\":\"%s\"}\n", notice_error_name(rc), notice_strerror(rc));
        return 1;
    }
    printf("{\"event\":\"mapped\",\"version\":%" PRIu64 "}\n", notice_version(b));
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        rc = notice_snapshot_reuse(b, &s);
        printf("{\"event\":\"read\",\"result\":\"%s\",\"faults\":%" PRIu64 ",\"faulted\":%s}\n",
               rc == NOTICE_OK ? "ok" : notice_error_name(rc), notice_faults_caught(),
               notice_faulted(b) ? "true" : "false");
        fflush(stdout);
    }
    notice_snapshot_free(s);
    notice_close(b);
    return 0;
}
