/*
 * gateway_net: the HostNetwork message (proto/agent.proto, docs/network.md)
 * for agents that build the host network (Hello.host_network): the host's
 * subnet and gateway from IPAM, the VXLAN id, and the underlay address and
 * subnet of every other such host. Sent after Welcome, and to each of them
 * again when a host registers or is given a subnet (host.registered and
 * host.network events, gw_on_event). One read per agent; a change while a
 * read is in flight reads once more after it.
 */
#define LOG_MODULE "gateway"
#include "gateway_priv.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "store.h"

/* The VXLAN id of the overlay: one per cluster (docs/network-overlay.md). */
#define GW_NET_VNI 4240
/* Most peers in one HostNetwork (agent/hostnet.h HOSTNET_PEERS_MAX). */
#define GW_NET_PEERS_MAX 4096

static void on_host_network(const PGresult *res, const struct db_error *err,
                            void *arg);

void
gw_net_send(struct gw_conn *c)
{
    const char *vals[1];

    if (!c->hostnet || c->state != GW_READY || c->host_id == NULL)
        return;
    if (c->net_inflight) {
        c->net_dirty = 1;
        return;
    }
    c->net_inflight = 1;
    c->net_dirty = 0;
    vals[0] = c->host_id;
    db_query(c->gw->db, store_stmt(ST_HOST_NETWORK), vals, on_host_network,
             conn_ref(c));
}

void
gw_net_changed(struct gateway *gw)
{
    for (struct gw_conn *c = gw->conns; c != NULL; c = c->next)
        gw_net_send(c);
}

static void
on_host_network(const PGresult *res, const struct db_error *err, void *arg)
{
    struct gw_conn *c = arg;
    Cloud__Agent__Envelope env = CLOUD__AGENT__ENVELOPE__INIT;
    Cloud__Agent__HostNetwork hn = CLOUD__AGENT__HOST_NETWORK__INIT;
    Cloud__Agent__HostNetworkPeer *peers = NULL, **pp = NULL;
    char *lines = NULL, *line, *save = NULL;
    size_t n = 0, cap = 0;

    c->net_inflight = 0;
    if (c->state != GW_READY)
        goto done;
    if (err != NULL || PQntuples(res) != 1) {
        log_warnx("host %s: cannot read its host network: %s", c->name,
                  err ? err->message : "no settings row");
        goto again;
    }
    lines = xstrdup(PQgetvalue(res, 0, HOST_NETWORK_PEERS));
    for (line = strtok_r(lines, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *id = line, *underlay = strchr(id, ' '), *subnet;

        if (underlay == NULL || (subnet = strchr(underlay + 1, ' ')) == NULL)
            continue; /* not the statement's shape: never sent */
        *underlay++ = '\0';
        *subnet++ = '\0';
        if (n == GW_NET_PEERS_MAX) {
            log_warnx("host %s: more than %d overlay peers; the others are "
                      "not sent",
                      c->name, GW_NET_PEERS_MAX);
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            peers = xrealloc(peers, cap * sizeof(*peers));
        }
        cloud__agent__host_network_peer__init(&peers[n]);
        peers[n].host_id = id;
        peers[n].underlay = underlay;
        peers[n].subnet = subnet;
        n++;
    }
    pp = xcalloc(n + 1, sizeof(*pp));
    for (size_t k = 0; k < n; k++)
        pp[k] = &peers[k];
    hn.cluster_cidr = PQgetvalue(res, 0, HOST_NETWORK_CLUSTER_CIDR);
    hn.subnet = PQgetvalue(res, 0, HOST_NETWORK_SUBNET);
    hn.gateway = PQgetvalue(res, 0, HOST_NETWORK_GATEWAY);
    hn.vni = GW_NET_VNI;
    hn.n_peers = n;
    hn.peers = pp;
    env.msg_case = CLOUD__AGENT__ENVELOPE__MSG_HOST_NETWORK;
    env.host_network = &hn;
    if (conn_send(c, &env) < 0) {
        conn_shutdown(c, "cannot send HostNetwork");
        goto done;
    }
    log_info("host %s: host network sent: subnet %s, %zu peers", c->name,
             hn.subnet[0] ? hn.subnet : "none", n);
again:
    if (c->net_dirty)
        gw_net_send(c);
done:
    free(pp);
    free(peers);
    free(lines);
    conn_unref(c);
}
