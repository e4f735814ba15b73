/*
 * netcmd: `cloud-agent net apply|remove --plan FILE`, a host network plan
 * (JSON) handed to hostnet, for operators and tests. The daemon gets its
 * plan from the controller instead; both end in hostnet_apply.
 */
#ifndef CLOUD_NETCMD_H
#define CLOUD_NETCMD_H

/* The largest plan file read. */
#define NETCMD_PLAN_MAX (1024 * 1024)

/* sub is "apply" or "remove"; returns the process exit status. */
int netcmd_run(const char *sub, const char *plan_path);

#endif
