/*
 * logrelay: console logs relayed between replicas (see logrelay.h). Owns
 * the relays this replica asks (struct lr_ask: the HTTP side's sink) and
 * those it serves (struct lr_hold: a gateway stream and the rows not
 * written yet), and the beat timer. Both are reference counted: every
 * query in flight holds one, the list holds one until the relay ends.
 *
 * An ask:  asking (no id yet) -> reading rows as NOTIFYs announce them ->
 *          ended by its last row, the client leaving, or a silent holder.
 * A hold:  taken -> one row in flight at a time, the chunks that come
 *          meanwhile gathered into the next -> ended by its last row, the
 *          asker ending it, or a silent asker.
 */
#define LOG_MODULE "logrelay"
#include "logrelay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "evbuf.h"
#include "log.h"
#include "mem.h"
#include "store.h"

/* log_relay_chunks.kind */
enum row_kind { ROW_NONE = -1, ROW_DATA, ROW_EOF, ROW_LOST, ROW_REFUSED };
static const char *const row_kinds[] = {"data", "eof", "lost", "refused"};

/* Links are sent in full at least this often (beats), changed or not. */
#define LOGRELAY_LINKS_EVERY 30

struct lr_ask {
    struct lr_ask *prev, *next; /* rl->asks while not dead */
    struct logrelay *rl;
    int refs;
    unsigned long long handle;
    long long id; /* the relay's row, 0 until the ask answers */
    char *host;
    char *holder;
    struct gateway_log_sink sink;
    void *arg;
    int seq; /* the next row expected */
    int reading, again;
    int dead; /* no more sink calls */
};

struct lr_hold {
    struct lr_hold *prev, *next; /* rl->holds while not dead */
    struct logrelay *rl;
    int refs;
    long long id;
    unsigned long long gwh; /* the gateway stream, 0 once it ended */
    struct evbuffer *pending;
    unsigned long long pend_off; /* the log offset of pending's first byte */
    int need_row; /* a chunk came (an empty first one too): a row is due */
    int seq;
    int putting;
    enum row_kind final; /* the last row, once known */
    int final_status;
    char *final_msg;
    int final_sent;
    int dead;
};

struct logrelay {
    struct event_base *base;
    struct db_pool *db, *beat_db;
    struct gateway *gw;
    char *replica;
    struct event *beat_ev;
    struct event *kick_ev; /* a beat now: the gateway's links changed */
    int beating, beat_again, beat_failing;
    char *links_sent; /* the links of the last beat that answered */
    int links_age;
    struct lr_ask *asks;
    int nasks;
    unsigned long long next_handle;
    struct lr_hold *holds;
    int closed;
};

static void
relay_end(struct logrelay *rl, long long id);

/* ---- shared ----------------------------------------------------------- */

static void
on_ended(const PGresult *res, const struct db_error *err, void *arg)
{
    (void)res;
    (void)arg;
    if (err != NULL)
        log_warnx("cannot end a log relay (the sweep will): %s",
                  err->message);
}

/* The relay's rows go; a holder still streaming is told to stop. */
static void
relay_end(struct logrelay *rl, long long id)
{
    char sid[24];
    const char *vals[2] = {sid, rl->replica};

    snprintf(sid, sizeof(sid), "%lld", id);
    db_query(rl->db, store_stmt(ST_LOG_RELAY_END), vals, on_ended, rl);
}

static long long
parse_ll(const char *s)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    return errno || *end || end == s ? -1 : v;
}

/* ---- asking: the replica without the agent ----------------------------- */

static void
ask_unref(struct lr_ask *a)
{
    if (--a->refs > 0)
        return;
    free(a->host);
    free(a->holder);
    free(a);
}

/* No more sink calls; the relay's rows go (once its id is known). */
static void
ask_finish(struct lr_ask *a)
{
    struct logrelay *rl = a->rl;

    if (a->dead)
        return;
    a->dead = 1;
    if (a->prev)
        a->prev->next = a->next;
    else
        rl->asks = a->next;
    if (a->next)
        a->next->prev = a->prev;
    rl->nasks--;
    if (a->id > 0 && !rl->closed)
        relay_end(rl, a->id);
    ask_unref(a);
}

static struct lr_ask *
ask_by_id(struct logrelay *rl, long long id)
{
    struct lr_ask *a;

    for (a = rl->asks; a != NULL; a = a->next)
        if (a->id == id)
            return a;
    return NULL;
}

static void
ask_refuse(struct lr_ask *a, int status, const char *why)
{
    struct gateway_log_sink sink = a->sink;
    void *arg = a->arg;

    ask_finish(a);
    sink.on_refused(arg, status, why);
}

static void
ask_lost(struct lr_ask *a, const char *why)
{
    struct gateway_log_sink sink = a->sink;
    void *arg = a->arg;

    ask_finish(a);
    sink.on_lost(arg, why);
}

/* One row read: hands it to the sink (which may cancel a meanwhile). */
static void
ask_deliver(struct lr_ask *a, enum row_kind kind, const unsigned char *data,
            size_t len, unsigned long long off, int status, const char *msg)
{
    struct gateway_log_sink sink = a->sink;
    void *arg = a->arg;

    switch (kind) {
    case ROW_DATA:
        sink.on_chunk(arg, data, len, off, 0, NULL);
        break;
    case ROW_EOF:
        ask_finish(a);
        sink.on_chunk(arg, data, len, off, 1, msg);
        break;
    case ROW_LOST:
        if (len > 0)
            sink.on_chunk(arg, data, len, off, 0, NULL);
        if (!a->dead)
            ask_lost(a, msg ? msg : "the agent's connection ended");
        break;
    case ROW_REFUSED:
        ask_refuse(a, status == 429 ? 429 : 503,
                   msg ? msg : "the log stream could not be opened");
        break;
    case ROW_NONE:
        break;
    }
}

static enum row_kind
row_kind(const char *s)
{
    for (int k = ROW_DATA; k <= ROW_REFUSED; k++)
        if (strcmp(s, row_kinds[k]) == 0)
            return (enum row_kind)k;
    return ROW_NONE;
}

static void ask_read(struct lr_ask *a);

static void
on_read(const PGresult *res, const struct db_error *err, void *arg)
{
    struct lr_ask *a = arg;
    int n;

    a->reading = 0;
    if (a->dead)
        goto done;
    if (err != NULL) {
        log_warnx("relay %lld: cannot read the log rows: %s", a->id,
                  err->message);
        ask_lost(a, "the relayed log could not be read from the database");
        goto done;
    }
    n = PQntuples(res);
    if (n >= LOGRELAY_READ_ROWS)
        a->again = 1; /* there may be more */
    for (int i = 0; i < n && !a->dead; i++) {
        const char *msg = PQgetisnull(res, i, LOG_RELAY_READ_MESSAGE)
                              ? NULL
                              : PQgetvalue(res, i, LOG_RELAY_READ_MESSAGE);
        enum row_kind kind = row_kind(PQgetvalue(res, i, LOG_RELAY_READ_KIND));
        long long seq = parse_ll(PQgetvalue(res, i, LOG_RELAY_READ_SEQ));
        long long off = parse_ll(PQgetvalue(res, i, LOG_RELAY_READ_OFFSET));
        long long status =
            PQgetisnull(res, i, LOG_RELAY_READ_STATUS)
                ? 0
                : parse_ll(PQgetvalue(res, i, LOG_RELAY_READ_STATUS));
        unsigned char *data;
        size_t len = 0;

        if (seq != a->seq || kind == ROW_NONE || off < 0) {
            log_warnx("relay %lld: row %lld where %d was due (kind %s)",
                      a->id, seq, a->seq,
                      PQgetvalue(res, i, LOG_RELAY_READ_KIND));
            ask_lost(a, "rows of the relayed log were lost");
            break;
        }
        a->seq++;
        data = PQunescapeBytea(
            (const unsigned char *)PQgetvalue(res, i, LOG_RELAY_READ_DATA),
            &len);
        if (data == NULL) {
            log_warnx("relay %lld: cannot decode row %lld", a->id, seq);
            ask_lost(a, "a row of the relayed log could not be decoded");
            break;
        }
        log_debug("relay %lld: row %lld (%s, %zu bytes) to the client",
                  a->id, seq, row_kinds[kind], len);
        ask_deliver(a, kind, data, len, (unsigned long long)off, (int)status,
                    msg);
        PQfreemem(data);
    }
    if (!a->dead && a->again) {
        a->again = 0;
        ask_read(a);
    }

done:
    ask_unref(a);
}

/* Reads the rows written so far; one read in flight per relay, so rows
 * reach the sink in order. */
static void
ask_read(struct lr_ask *a)
{
    char sid[24], smax[16];
    const char *vals[2] = {sid, smax};

    if (a->reading) {
        a->again = 1;
        return;
    }
    a->reading = 1;
    a->refs++;
    snprintf(sid, sizeof(sid), "%lld", a->id);
    snprintf(smax, sizeof(smax), "%d", LOGRELAY_READ_ROWS);
    db_query(a->rl->db, store_stmt(ST_LOG_RELAY_READ), vals, on_read, a);
}

static void
on_asked(const PGresult *res, const struct db_error *err, void *arg)
{
    struct lr_ask *a = arg;
    char why[600];

    if (err == NULL && PQntuples(res) == 1) {
        a->id = parse_ll(PQgetvalue(res, 0, LOG_RELAY_ASK_ID));
        a->holder = xstrdup(PQgetvalue(res, 0, LOG_RELAY_ASK_HOLDER));
    }
    if (a->dead) {
        /* The client left while asking. */
        if (a->id > 0 && !a->rl->closed)
            relay_end(a->rl, a->id);
        goto done;
    }
    if (err != NULL) {
        snprintf(why, sizeof(why),
                 "cannot ask for the log through the database: %s",
                 err->message);
        ask_refuse(a, 503, why);
    } else if (a->id <= 0) {
        snprintf(why, sizeof(why),
                 "the agent of host %s is not connected to any controller",
                 a->host);
        ask_refuse(a, 503, why);
    } else {
        /* Rows written before now were announced before the id was
         * known here. */
        ask_read(a);
    }

done:
    ask_unref(a);
}

unsigned long long
logrelay_open(struct logrelay *rl, const struct gateway_log_params *p,
              const struct gateway_log_sink *sink, void *arg, int *status,
              char *why, size_t whylen)
{
    struct lr_ask *a;
    char tb[24], tl[24], stale[16];
    const char *vals[7];

    if (rl->closed || rl->nasks >= LOGRELAY_ASKS_MAX) {
        *status = rl->closed ? 503 : 429;
        snprintf(why, whylen,
                 rl->closed ? "this controller is shutting down"
                            : "this controller relays %d console logs already "
                              "(at most %d); try again later",
                 rl->nasks, LOGRELAY_ASKS_MAX);
        return 0;
    }
    a = xcalloc(1, sizeof(*a));
    a->rl = rl;
    a->refs = 2; /* the list's and the ask query's */
    a->handle = ++rl->next_handle;
    a->host = xstrdup(p->host);
    a->sink = *sink;
    a->arg = arg;
    a->next = rl->asks;
    if (rl->asks)
        rl->asks->prev = a;
    rl->asks = a;
    rl->nasks++;
    snprintf(tb, sizeof(tb), "%llu", p->tail_bytes);
    snprintf(tl, sizeof(tl), "%u", p->tail_lines);
    snprintf(stale, sizeof(stale), "%d", LOGRELAY_STALE_MS);
    vals[0] = rl->replica;
    vals[1] = p->host;
    vals[2] = p->instance_id;
    vals[3] = tb;
    vals[4] = tl;
    vals[5] = p->follow ? "true" : "false";
    vals[6] = stale;
    db_query(rl->db, store_stmt(ST_LOG_RELAY_ASK), vals, on_asked, a);
    return a->handle;
}

void
logrelay_cancel(struct logrelay *rl, unsigned long long handle)
{
    struct lr_ask *a;

    for (a = rl ? rl->asks : NULL; a != NULL; a = a->next)
        if (a->handle == handle) {
            ask_finish(a);
            return;
        }
}

/* ---- holding: the replica with the agent ------------------------------- */

static void
hold_unref(struct lr_hold *h)
{
    if (--h->refs > 0)
        return;
    evbuffer_free(h->pending);
    free(h->final_msg);
    free(h);
}

/* Forgets h: its gateway stream stops, and with end its rows go too. */
static void
hold_stop(struct lr_hold *h, int end)
{
    struct logrelay *rl = h->rl;

    if (h->dead)
        return;
    h->dead = 1;
    if (h->gwh != 0) {
        unsigned long long gwh = h->gwh;

        h->gwh = 0;
        gateway_log_close(rl->gw, gwh);
    }
    if (h->prev)
        h->prev->next = h->next;
    else
        rl->holds = h->next;
    if (h->next)
        h->next->prev = h->prev;
    if (end && !rl->closed)
        relay_end(rl, h->id);
    hold_unref(h);
}

static struct lr_hold *
hold_by_id(struct logrelay *rl, long long id)
{
    struct lr_hold *h;

    for (h = rl->holds; h != NULL; h = h->next)
        if (h->id == id)
            return h;
    return NULL;
}

static void hold_flush(struct lr_hold *h);

/* The last row is known; it goes after the data gathered before it. */
static void
hold_final(struct lr_hold *h, enum row_kind kind, int status, const char *msg)
{
    if (h->final != ROW_NONE)
        return;
    h->final = kind;
    h->final_status = status;
    h->final_msg = msg ? xstrdup(msg) : NULL;
    hold_flush(h);
}

static void
on_put(const PGresult *res, const struct db_error *err, void *arg)
{
    struct lr_hold *h = arg;
    long long unread;

    h->putting = 0;
    if (h->dead) {
        hold_unref(h); /* the put's reference, maybe the last */
        return;
    }
    /* Alive, h is on the list, which holds a reference of its own: the
     * put's goes now, and a hold_stop below drops the list's. */
    h->refs--;
    if (err != NULL) {
        log_warnx("relay %lld: cannot write a log row: %s", h->id,
                  err->message);
        hold_stop(h, 1);
        return;
    }
    if (PQgetisnull(res, 0, 0)) {
        /* The asker ended the relay. */
        hold_stop(h, 0);
        return;
    }
    if (h->final_sent) {
        hold_stop(h, 0);
        return;
    }
    unread = parse_ll(PQgetvalue(res, 0, 0));
    if (unread > (long long)LOGRELAY_UNREAD_MAX && h->final == ROW_NONE) {
        log_warnx("relay %lld: the asking replica fell %u bytes behind; "
                  "ending its stream",
                  h->id, LOGRELAY_UNREAD_MAX);
        if (h->gwh != 0) {
            gateway_log_close(h->rl->gw, h->gwh);
            h->gwh = 0;
        }
        evbuffer_drain(h->pending, evbuffer_get_length(h->pending));
        h->need_row = 0;
        hold_final(h, ROW_EOF, 0, NULL);
        return;
    }
    hold_flush(h);
}

/* Writes the next row if none is in flight: what the agent sent meanwhile,
 * up to LOGRELAY_ROW_MAX, as one row. */
static void
hold_flush(struct lr_hold *h)
{
    size_t have = evbuffer_get_length(h->pending);
    size_t n = have < LOGRELAY_ROW_MAX ? have : LOGRELAY_ROW_MAX;
    enum row_kind kind = h->final != ROW_NONE && n == have ? h->final
                                                           : ROW_DATA;
    static const char hex[] = "0123456789abcdef";
    char sid[24], sseq[16], soff[24], sstatus[16];
    const char *vals[7];
    unsigned char *src;
    char *data;

    if (h->putting || h->dead || h->final_sent ||
        (!h->need_row && kind == ROW_DATA))
        return;
    src = evbuffer_pullup(h->pending, (ev_ssize_t)n);
    data = xmalloc(2 * n + 3);
    data[0] = '\\';
    data[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        data[2 + 2 * i] = hex[src[i] >> 4];
        data[3 + 2 * i] = hex[src[i] & 15];
    }
    data[2 + 2 * n] = '\0';
    snprintf(sid, sizeof(sid), "%lld", h->id);
    snprintf(sseq, sizeof(sseq), "%d", h->seq);
    snprintf(soff, sizeof(soff), "%llu", h->pend_off);
    snprintf(sstatus, sizeof(sstatus), "%d", h->final_status);
    vals[0] = sid;
    vals[1] = sseq;
    vals[2] = row_kinds[kind];
    vals[3] = data;
    vals[4] = soff;
    vals[5] = kind == ROW_REFUSED ? sstatus : NULL;
    vals[6] = kind == ROW_DATA ? NULL : h->final_msg;
    h->seq++;
    h->pend_off += n;
    evbuffer_drain(h->pending, n);
    h->need_row = evbuffer_get_length(h->pending) > 0;
    h->final_sent = kind != ROW_DATA;
    h->putting = 1;
    h->refs++;
    db_query(h->rl->db, store_stmt(ST_LOG_RELAY_PUT), vals, on_put, h);
    free(data);
}

static void
hold_on_chunk(void *arg, const unsigned char *data, size_t len,
              unsigned long long offset, int eof, const char *error)
{
    struct lr_hold *h = arg;

    log_debug("relay %lld: %zu bytes from the agent%s", h->id, len,
              eof ? " (the last)" : "");
    if (!h->need_row && evbuffer_get_length(h->pending) == 0)
        h->pend_off = offset;
    if (len > 0 && evbuffer_add(h->pending, data, len) < 0)
        fatalx("out of memory");
    h->need_row = 1;
    if (eof) {
        h->gwh = 0; /* the gateway forgot it */
        hold_final(h, ROW_EOF, 0, error);
        return;
    }
    if (evbuffer_get_length(h->pending) > LOGRELAY_UNREAD_MAX) {
        /* The database takes rows slower than the agent sends. */
        log_warnx("relay %lld: over %u bytes wait for the database; ending "
                  "the stream",
                  h->id, LOGRELAY_UNREAD_MAX);
        gateway_log_close(h->rl->gw, h->gwh);
        h->gwh = 0;
        hold_final(h, ROW_EOF, 0, NULL);
        return;
    }
    hold_flush(h);
}

static void
hold_on_lost(void *arg, const char *why)
{
    struct lr_hold *h = arg;

    h->gwh = 0;
    hold_final(h, ROW_LOST, 0, why);
}

/* A relay asked of this replica: open its stream through the gateway. */
static void
hold_open(struct logrelay *rl, const PGresult *res, int row)
{
    static const struct gateway_log_sink sink = {.on_chunk = hold_on_chunk,
                                                 .on_lost = hold_on_lost};
    struct gateway_log_params p;
    struct lr_hold *h = xcalloc(1, sizeof(*h));
    long long tb = parse_ll(PQgetvalue(res, row, LOG_RELAY_TAKE_TAIL_BYTES));
    long long tl = parse_ll(PQgetvalue(res, row, LOG_RELAY_TAKE_TAIL_LINES));
    char why[600];
    int status = 503;

    h->rl = rl;
    h->refs = 1;
    h->id = parse_ll(PQgetvalue(res, row, LOG_RELAY_TAKE_ID));
    h->pending = evbuf_new();
    h->final = ROW_NONE;
    h->next = rl->holds;
    if (rl->holds)
        rl->holds->prev = h;
    rl->holds = h;
    memset(&p, 0, sizeof(p));
    p.host = PQgetvalue(res, row, LOG_RELAY_TAKE_HOST);
    p.instance_id = PQgetvalue(res, row, LOG_RELAY_TAKE_INSTANCE_ID);
    p.tail_bytes = tb > 0 ? (unsigned long long)tb : 0;
    p.tail_lines = tl > 0 ? (unsigned)tl : 0;
    p.follow = strcmp(PQgetvalue(res, row, LOG_RELAY_TAKE_FOLLOW), "t") == 0;
    if (!gateway_holds(rl->gw, p.host)) {
        /* It left since this replica last beat (its link goes at the next
         * beat), or this replica has no gateway. */
        snprintf(why, sizeof(why),
                 "the agent of host %s is not connected to any controller",
                 p.host);
    } else {
        h->gwh = gateway_log_open(rl->gw, &p, &sink, h, &status, why,
                                  sizeof(why));
        if (h->gwh != 0)
            return;
    }
    hold_final(h, ROW_REFUSED, status, why);
}

static void
on_taken(const PGresult *res, const struct db_error *err, void *arg)
{
    struct logrelay *rl = arg;

    if (err != NULL) {
        /* The asker's first-chunk timer answers its client. */
        log_warnx("cannot take the log relays asked of this controller: %s",
                  err->message);
        return;
    }
    if (rl->closed)
        return;
    for (int i = 0; i < PQntuples(res); i++)
        hold_open(rl, res, i);
}

/* id < 0: every relay waiting for this replica. */
static void
hold_take(struct logrelay *rl, long long id)
{
    char sid[24];
    const char *vals[2] = {id < 0 ? NULL : sid, rl->replica};

    snprintf(sid, sizeof(sid), "%lld", id);
    db_query(rl->db, store_stmt(ST_LOG_RELAY_TAKE), vals, on_taken, rl);
}

/* ---- wake-ups and the beat ---------------------------------------------- */

/* "logs ask|chunk|end <replica> <id>" on the hub's channel. */
static void
on_payload(void *arg, const char *payload)
{
    struct logrelay *rl = arg;
    const char *verb, *who, *sp;
    size_t rlen = strlen(rl->replica);
    long long id;

    if (rl->closed || strncmp(payload, "logs ", 5) != 0)
        return;
    verb = payload + 5;
    who = strchr(verb, ' ');
    sp = strrchr(payload, ' ');
    if (who == NULL || sp == who)
        return;
    who++;
    if ((size_t)(sp - who) != rlen || memcmp(who, rl->replica, rlen) != 0)
        return; /* another replica's */
    if ((id = parse_ll(sp + 1)) <= 0)
        return;
    if (strncmp(verb, "chunk ", 6) == 0) {
        struct lr_ask *a = ask_by_id(rl, id);

        if (a != NULL)
            ask_read(a);
    } else if (strncmp(verb, "ask ", 4) == 0) {
        hold_take(rl, id);
    } else if (strncmp(verb, "end ", 4) == 0) {
        struct lr_hold *h = hold_by_id(rl, id);

        if (h != NULL)
            hold_stop(h, 0);
    }
}

/* The LISTEN session is back: what it announced meanwhile is in the
 * tables. */
static void
on_reconnect(void *arg)
{
    struct logrelay *rl = arg;
    struct lr_ask *a;

    if (rl->closed)
        return;
    for (a = rl->asks; a != NULL; a = a->next)
        if (a->id > 0)
            ask_read(a);
    hold_take(rl, -1);
}

static void
on_beat(const PGresult *res, const struct db_error *err, void *arg)
{
    struct logrelay *rl = arg;
    char *links = rl->links_sent;

    rl->beating = 0;
    rl->links_sent = NULL;
    if (rl->beat_again && !rl->closed) {
        rl->beat_again = 0;
        event_active(rl->kick_ev, EV_TIMEOUT, 0);
    }
    if (err != NULL) {
        if (!rl->beat_failing)
            log_warnx("cannot record this replica's beat (relayed logs "
                      "stop if this lasts %d s): %s",
                      LOGRELAY_STALE_MS / 1000, err->message);
        rl->beat_failing = 1;
        free(links);
        return;
    }
    if (rl->beat_failing)
        log_info("this replica's beat is recorded again");
    rl->beat_failing = 0;
    rl->links_sent = links; /* confirmed */
    if (rl->closed)
        return;
    for (int i = 0; i < PQntuples(res); i++) {
        long long id = parse_ll(PQgetvalue(res, i, LOG_RELAY_BEAT_ID));
        int gone = strcmp(PQgetvalue(res, i, LOG_RELAY_BEAT_GONE), "t") == 0;
        struct lr_ask *a = ask_by_id(rl, id);
        struct lr_hold *h = hold_by_id(rl, id);
        char why[600];

        if (a != NULL) {
            /* Gone: the holder ended it, taking this replica for silent
             * (its beats did not reach the database), or the database
             * lost it (a failover empties UNLOGGED tables). */
            snprintf(why, sizeof(why),
                     gone ? "the relay from the controller replica %s that "
                            "holds the agent of host %s was dropped"
                          : "the controller replica %s that holds the agent "
                            "of host %s stopped answering",
                     a->holder ? a->holder : "?", a->host);
            log_warnx("relay %lld: %s", id, why);
            ask_lost(a, why);
        }
        if (h != NULL && gone) {
            /* Ended by the asker; its NOTIFY is on its way. */
            hold_stop(h, 0);
        } else if (h != NULL) {
            log_info("relay %lld: the asking replica stopped answering; "
                     "ending the stream",
                     id);
            hold_stop(h, 1);
        }
    }
}

static void
beat(struct logrelay *rl)
{
    json_t *links, *relays;
    char *ljs, *rjs, stale[16];
    const char *vals[4];
    struct lr_ask *a;
    struct lr_hold *h;

    if (rl->beating || rl->closed)
        return;
    links = gateway_links(rl->gw);
    relays = json_array();
    if (relays == NULL)
        fatalx("out of memory");
    for (a = rl->asks; a != NULL; a = a->next)
        if (a->id > 0 && json_array_append_new(relays, json_integer(a->id)) < 0)
            fatalx("out of memory");
    for (h = rl->holds; h != NULL; h = h->next)
        if (json_array_append_new(relays, json_integer(h->id)) < 0)
            fatalx("out of memory");
    ljs = json_dumps(links, JSON_COMPACT);
    rjs = json_dumps(relays, JSON_COMPACT);
    json_decref(links);
    json_decref(relays);
    if (ljs == NULL || rjs == NULL)
        fatalx("cannot serialise a JSON array");
    snprintf(stale, sizeof(stale), "%d", LOGRELAY_STALE_MS);
    vals[0] = rl->replica;
    /* Unchanged links are re-sent now and then only (a database restored
     * or failed over may have lost them). */
    if (rl->links_sent != NULL && strcmp(rl->links_sent, ljs) == 0 &&
        ++rl->links_age < LOGRELAY_LINKS_EVERY) {
        vals[1] = NULL;
    } else {
        vals[1] = ljs;
        rl->links_age = 0;
    }
    vals[2] = rjs;
    vals[3] = stale;
    rl->beating = 1;
    db_query(rl->beat_db, store_stmt(ST_LOG_RELAY_BEAT), vals, on_beat, rl);
    /* What on_beat keeps once the database has it. */
    free(rl->links_sent);
    rl->links_sent = ljs;
    free(rjs);
}

static void
on_beat_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    beat(arg);
}

/* An agent's session started or ended here: its link is written now, not
 * at the next beat (a request through another replica would miss it). */
static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct logrelay *rl = arg;

    (void)fd;
    (void)what;
    if (rl->beating)
        rl->beat_again = 1;
    else
        beat(rl);
}

static void
on_links(void *arg)
{
    struct logrelay *rl = arg;

    if (!rl->closed)
        event_active(rl->kick_ev, EV_TIMEOUT, 0);
}

/* ---- life cycle ---------------------------------------------------------- */

struct logrelay *
logrelay_new(struct event_base *base, struct db_pool *db,
             struct db_pool *beat_db, struct watch *w, struct gateway *gw,
             const char *replica)
{
    struct logrelay *rl = xcalloc(1, sizeof(*rl));
    struct timeval tv = {LOGRELAY_BEAT_MS / 1000,
                         (LOGRELAY_BEAT_MS % 1000) * 1000};
    struct watch_observer obs;

    rl->base = base;
    rl->db = db;
    rl->beat_db = beat_db ? beat_db : db;
    rl->gw = gw;
    rl->replica = xstrdup(replica);
    rl->beat_ev = event_new(base, -1, EV_PERSIST, on_beat_timer, rl);
    rl->kick_ev = evtimer_new(base, on_kick, rl);
    if (rl->beat_ev == NULL || rl->kick_ev == NULL ||
        event_add(rl->beat_ev, &tv) < 0)
        fatalx("cannot start the log relay's beat");
    if (gw != NULL)
        gateway_on_links(gw, on_links, rl);
    event_active(rl->kick_ev, EV_TIMEOUT, 0); /* the first beat now */
    memset(&obs, 0, sizeof(obs));
    obs.on_reconnect = on_reconnect;
    obs.arg = rl;
    watch_observe(w, &obs);
    watch_on_payload(w, on_payload, rl);
    return rl;
}

void
logrelay_close(struct logrelay *rl)
{
    if (rl == NULL || rl->closed)
        return;
    rl->closed = 1;
    event_del(rl->beat_ev);
    event_del(rl->kick_ev);
    while (rl->asks != NULL)
        ask_finish(rl->asks);
    while (rl->holds != NULL)
        hold_stop(rl->holds, 0);
}

void
logrelay_free(struct logrelay *rl)
{
    if (rl == NULL)
        return;
    logrelay_close(rl);
    event_free(rl->beat_ev);
    event_free(rl->kick_ev);
    free(rl->links_sent);
    free(rl->replica);
    free(rl);
}
