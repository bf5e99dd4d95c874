/* libnotice.c - the implementation of notice.h, built as libnotice.so.
 *
 * Compiled with -fvisibility=hidden: only the functions marked NOTICE_API in notice.h (the notice_* API) are
 * exported; the CRC table and the internal helpers stay private to the library. */
#define _GNU_SOURCE
#define NOTICE_IMPLEMENTATION
#include "notice.h"
