/*
 * netopt: socket options shared by the controller and the agent.
 */
#ifndef CLOUD_NETOPT_H
#define CLOUD_NETOPT_H

/*
 * TCP_NODELAY on fd: small messages (a config line, a status, an HTTP
 * reply) leave at once instead of waiting, behind an unacknowledged
 * segment, for the peer's delayed ACK (up to 40 ms on Linux). 0, or -1
 * with errno set; a non-TCP socket (AF_UNIX) is left alone and gives 0.
 */
int netopt_nodelay(int fd);

#endif
