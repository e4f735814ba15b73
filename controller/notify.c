/*
 * notify: READY=1 and STOPPING=1 for systemd (notify.h). The readiness of
 * the cache, the tokens and the LISTEN session is polled every
 * NOTIFY_POLL_MS from the moment the API listens until it is reached,
 * rather than hooked into those modules: they stay unaware of systemd,
 * and the poll lasts only the start-up (a few hundred milliseconds).
 */
#define LOG_MODULE "notify"
#include <stdlib.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "mem.h"
#include "notify.h"

struct notify {
    struct app *app;
    struct event *tick;
    char *url;
};

static int
is_ready(const struct app *app)
{
    return auth_ready(app->auth) && cache_ready(app->cache) &&
           watch_listening(app->watch);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct notify *n = arg;
    int r;

    (void)fd;
    (void)what;
    if (!is_ready(n->app))
        return;
    event_del(n->tick);
    r = sd_notifyf(0, "READY=1\nSTATUS=serving the API on %s", n->url);
    if (r < 0)
        log_warnx("cannot tell systemd the controller is ready: sd_notify "
                  "failed with error %d",
                  -r);
    else
        log_info("told systemd the controller is ready");
}

struct notify *
notify_new(struct app *app, const char *url)
{
    struct timeval every = {0, NOTIFY_POLL_MS * 1000};
    const char *sock = getenv("NOTIFY_SOCKET");
    struct notify *n;

    if (sock == NULL || *sock == '\0')
        return NULL;
    n = xcalloc(1, sizeof(*n));
    n->app = app;
    n->url = xstrdup(url);
    n->tick = event_new(app->base, -1, EV_PERSIST, on_tick, n);
    if (n->tick == NULL || event_add(n->tick, &every) < 0)
        fatalx("cannot add the readiness timer");
    (void)sd_notify(0, "STATUS=loading the read cache and API tokens");
    return n;
}

void
notify_free(struct notify *n)
{
    if (n == NULL)
        return;
    if (n->tick)
        event_free(n->tick);
    free(n->url);
    free(n);
}

void
notify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
}
