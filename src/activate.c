/*
 * activate.c - socket activation: the listening sockets a service
 * manager (systemd, systemd-socket-activate) passes as fds 3, 4, ...
 * with LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, as sd_listen_fds(3)
 * reads them. Knows nothing of servers beyond weft_server_listen_fd().
 *
 * The variables are read once per process and cleared right away (as
 * sd_listen_fds(1) does), so a child the program starts does not take
 * them for its own; what they said is kept here. Each fd is handed to
 * at most one server.
 */
#include "internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* sd_listen_fds' SD_LISTEN_FDS_START. */
#define FDS_START 3
/* More than any unit passes; a larger LISTEN_FDS is taken as garbage. */
#define FDS_MAX 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool parsed;
static int count;
static char *names[FDS_MAX];
static bool taken[FDS_MAX];

static void parse_locked(void)
{
    if (parsed)
        return;
    parsed = true;
    const char *pid = getenv("LISTEN_PID");
    const char *fds = getenv("LISTEN_FDS");
    const char *fdnames = getenv("LISTEN_FDNAMES");
    char *end;
    if (pid != NULL && fds != NULL) {
        long p = strtol(pid, &end, 10);
        long n = *end == '\0' ? strtol(fds, &end, 10) : -1;
        /* Meant for this process only: not for a child that inherited
         * the environment. */
        if (*end == '\0' && p == (long)getpid() && n > 0 && n <= FDS_MAX)
            count = (int)n;
    }
    const char *q = fdnames;
    for (int i = 0; i < count; i++) {
        fcntl(FDS_START + i, F_SETFD, FD_CLOEXEC);
        if (q == NULL)
            continue;
        const char *colon = strchr(q, ':');
        size_t len = colon ? (size_t)(colon - q) : strlen(q);
        names[i] = weft__malloc(len + 1);
        if (names[i] != NULL) {
            memcpy(names[i], q, len);
            names[i][len] = '\0';
        }
        q = colon ? colon + 1 : NULL;
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

int weft_listen_fds(void)
{
    pthread_mutex_lock(&lock);
    parse_locked();
    int n = count;
    pthread_mutex_unlock(&lock);
    return n;
}

const char *weft_listen_fd_name(int index)
{
    pthread_mutex_lock(&lock);
    parse_locked();
    const char *name = index >= 0 && index < count ? names[index] : NULL;
    pthread_mutex_unlock(&lock);
    return name;
}

int weft_server_listen_activated(weft_server *server, const char *name,
                                 int index, weft_server_listening_cb cb,
                                 void *ctx)
{
    if (server == NULL || (name == NULL && index < 0))
        return WEFT_EINVAL;
    pthread_mutex_lock(&lock);
    parse_locked();
    int found = -1;
    for (int i = 0; i < count && found < 0; i++) {
        if (taken[i])
            continue;
        if (name != NULL ? names[i] != NULL && strcmp(names[i], name) == 0
                         : i == index)
            found = i;
    }
    if (found < 0) {
        pthread_mutex_unlock(&lock);
        return WEFT_ENOENT;
    }
    int err = weft_server_listen_fd(server, FDS_START + found, cb, ctx);
    if (err == 0)
        taken[found] = true;
    pthread_mutex_unlock(&lock);
    return err;
}
