/*
 * notify: the controller's readiness as systemd's Type=notify sees it
 * (packaging/systemd/cloud-controller.service, docs/install.md).
 *
 * READY=1 goes out once, when the controller can serve what GET /readyz
 * answers 200 for: the API listens (the caller starts this after
 * http_server_listen), API tokens are loaded, the read cache is full and
 * the LISTEN session that keeps it current is up. The schema needs no
 * check here: migrate_run brought it to this binary's version before the
 * API started. STOPPING=1 goes out when a signal starts the shutdown.
 *
 * Without NOTIFY_SOCKET in the environment (not started by systemd, or
 * not Type=notify) sd_notify does nothing, and neither does this module.
 */
#ifndef CLOUD_NOTIFY_H
#define CLOUD_NOTIFY_H

#include "app.h"

/* How often readiness is checked until it is reached. */
#define NOTIFY_POLL_MS 50

struct notify;

/* Starts watching app for readiness; NULL without NOTIFY_SOCKET. */
struct notify *notify_new(struct app *app, const char *url);
void notify_free(struct notify *n);
/* Tells systemd the controller is stopping (a no-op without it). */
void notify_stopping(void);

#endif
