/* notice_dump PATH - print one snapshot of the board at PATH as the dump JSON of FORMAT.md §8.
 *
 * Exit status: 0 and the dump on stdout; 1 and {"error":NAME,"message":TEXT} on stdout when the board cannot be
 * read; 2 on a usage error (message on stderr). It installs the fault guard (notice_guard_faults) first, so a file
 * truncated while it is read gives {"error":"truncated",...}, not a death by SIGBUS. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Writes s[0..n) as a JSON string. s is valid UTF-8 (the reader checked it), so bytes >= 0x80 pass through;
 * '"' and '\\' are escaped, and every control character below 0x20 becomes \u00XX. */
static void json_string(FILE *f, const char *s, size_t n)
{
    size_t i;
    fputc('"', f);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void state_string(FILE *f, uint32_t state)
{
    char buf[32];
    if (state == NOTICE_STATE_LIVE)
        json_string(f, "live", 4);
    else if (state == NOTICE_STATE_SUPERSEDED)
        json_string(f, "superseded", 10);
    else {
        int n = snprintf(buf, sizeof buf, "unknown(%" PRIu32 ")", state);
        json_string(f, buf, (size_t)n);
    }
}

struct printer {
    FILE *f;
    size_t printed;
};

/* notice_iterate callback: one element of the "records" array. */
static int print_record(const notice_record *r, void *arg)
{
    struct printer *p = (struct printer *)arg;
    FILE *f = p->f;
    if (p->printed++ > 0)
        fputc(',', f);
    fprintf(f,
            "{\"id\":%" PRIu64 ",\"effective_at\":%" PRId64 ",\"expires_at\":%" PRId64 ",\"priority\":%" PRId32
            ",\"content\":",
            r->id, r->effective_at, r->expires_at, r->priority);
    json_string(f, r->content, r->content_len);
    fputc('}', f);
    return 0;
}

static int fail(int rc, const char *path, int err_no)
{
    char msg[512];
    if (rc == NOTICE_EIO && err_no != 0)
        snprintf(msg, sizeof msg, "%s: %s: %s", notice_strerror(rc), path, strerror(err_no));
    else
        snprintf(msg, sizeof msg, "%s: %s", path, notice_strerror(rc));
    fputs("{\"error\":", stdout);
    json_string(stdout, notice_error_name(rc), strlen(notice_error_name(rc)));
    fputs(",\"message\":", stdout);
    json_string(stdout, msg, strlen(msg));
    fputs("}\n", stdout);
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    notice_board *b = NULL;
    notice_snapshot_t *s = NULL;
    struct printer pr = {stdout, 0};
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: notice_dump PATH\n");
        return 2;
    }
    (void)notice_guard_faults(); /* without it (sigaction failed) the dump works as before: unguarded */
    errno = 0;
    rc = notice_open(argv[1], &b);
    if (rc != NOTICE_OK)
        return fail(rc, argv[1], errno);
    rc = notice_snapshot(b, &s);
    if (rc != NOTICE_OK) {
        int e = errno;
        notice_close(b);
        return fail(rc, argv[1], e);
    }

    printf("{\"version\":%" PRIu64 ",\"major\":%u,\"minor\":%u,\"state\":", s->version, (unsigned)s->major,
           (unsigned)s->minor);
    state_string(stdout, s->state);
    printf(",\"region_size\":%" PRIu64 ",\"capacity\":%" PRIu32 ",\"stride\":%" PRIu32 ",\"writer_pid\":%" PRIu32
           ",\"generation\":%" PRIu64 ",\"heartbeat_ns\":%" PRId64 ",\"published_at\":%" PRId64
           ",\"count\":%zu,\"records\":[",
           s->region_size, s->capacity, s->stride, s->writer_pid, s->generation, s->heartbeat_ns, s->published_at,
           notice_count(s));
    notice_iterate(s, print_record, &pr);
    fputs("]}\n", stdout);

    notice_snapshot_free(s);
    notice_close(b);
    if (fflush(stdout) != 0 || ferror(stdout))
        return 1;
    return 0;
}
