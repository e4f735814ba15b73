/*
 * ident: the agent's identity as written into the domains it makes (see
 * domxml.h, DOMXML_OWNER_MAX): the cluster id and the agent's name.
 *
 * The controller has no cluster id of its own, so the agent derives one
 * from the cluster CA it trusts: the first 16 bytes of the SHA-256 of the
 * CA certificate's DER, in hex. Every agent of a cluster trusts the same CA
 * and so computes the same id; two clusters have different CAs. The agent's
 * name is the CN of its client certificate, which the controller checks
 * against the host name (controller/gateway_conn.c), so it is unique in
 * the cluster.
 */
#ifndef CLOUD_AGENT_IDENT_H
#define CLOUD_AGENT_IDENT_H

#define IDENT_CLUSTER_HEX 32

/*
 * Reads the first certificate of ca_file and of cert_file. Returns 0 with
 * new strings in *clusterp and *ownerp, or -1 (logged).
 */
int ident_load(const char *ca_file, const char *cert_file, char **clusterp,
               char **ownerp);

#endif
