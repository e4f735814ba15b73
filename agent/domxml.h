/*
 * domxml: libvirt domain XML for one instance, built with libxml2's tree API
 * so that every value is escaped by the library, never by hand. Also reads
 * back the instance metadata element the agent uses to re-adopt domains
 * after a restart. Covered by golden files in tests/golden/domxml/.
 */
#ifndef CLOUD_AGENT_DOMXML_H
#define CLOUD_AGENT_DOMXML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"

/* Namespace of the <metadata> child carrying instance id and generation. */
#define DOMXML_METADATA_NS "https://cloud.example/xmlns/instance/1"
#define DOMXML_METADATA_PREFIX "cloud"
#define DOMXML_NAME_PREFIX "cloud-"
/* Guest channel carrying JSON lines of config down and exit codes up. */
#define DOMXML_CHANNEL_NAME "org.cloud.config.0"
/* fw_cfg key with the boot-time config, for guests without virtio-serial. */
#define DOMXML_FWCFG_NAME "opt/org.cloud/config"
/* Instance ids become domain names and file names: keep them tame. */
#define DOMXML_ID_MAX 64

struct domxml_spec {
    const char *instance_id; /* [A-Za-z0-9_-], 1..DOMXML_ID_MAX */
    uint64_t generation;
    enum hv_type type;   /* qemu, kvm or test */
    unsigned vcpus;      /* >= 1 */
    uint64_t memory_mib; /* >= 1 */
    const char *arch;    /* optional, e.g. "x86_64" */

    /* Kernel images: direct kernel boot. Exactly one of kernel and disk. */
    const char *kernel;
    const char *initrd;  /* optional */
    const char *cmdline; /* optional */
    /* Disk images: the instance's qcow2 overlay. */
    const char *disk;

    const char *console_log;  /* optional: serial console written to file */
    const char *channel_path; /* optional: unix socket of the config channel */
    /*
     * Optional: file whose bytes become fw_cfg opt/org.cloud/config. A file,
     * not an inline value: libvirt 9.0 XML-escapes inline values on the
     * QEMU command line (the guest reads &quot;), and a file also keeps the
     * config out of `ps`. QEMU opens it, so it must be readable by QEMU's user.
     */
    const char *boot_config_file;
    /*
     * Optional owner, written into the metadata element next to id and
     * generation: the cluster id and the agent identity (its certificate
     * CN) that made the domain. Both or neither; 1..DOMXML_OWNER_MAX
     * characters of [A-Za-z0-9_.:-]. An agent adopts and stops only the
     * domains that name its own cluster and identity (domxml_owner_check).
     */
    const char *cluster;
    const char *owner;
    /* Optional: a libvirt network ([A-Za-z0-9_-]) the domain gets one
     * virtio NIC on (cloud-agent --network); its addresses are reported. */
    const char *network;
};

#define DOMXML_OWNER_MAX 128

/* True if id is 1..DOMXML_ID_MAX characters of [A-Za-z0-9_-]; silent. */
bool domxml_id_ok(const char *id);
/* 0 if id is a valid instance id, -1 (logged) if not. */
int domxml_id_valid(const char *id);

/* "cloud-<id>" in a new string. */
char *domxml_domain_name(const char *instance_id);

/*
 * The domain UUID of an instance, derived from its id (SHA-256 based), as a
 * new string. libvirt refuses to redefine a name under a different UUID, so
 * a stable one lets a new generation redefine the domain, and lets a
 * restarted agent produce the same definition, without storing anything.
 */
char *domxml_uuid(const char *instance_id);

/*
 * The libvirt <panic> model for a guest architecture (NULL: the agent's
 * own): "isa" on x86, NULL where libvirt 9.0 has none (elsewhere).
 */
const char *domxml_panic_model(const char *arch);

/*
 * Builds the domain XML for spec. Returns a new NUL-terminated string, or
 * NULL (logged) when the spec is invalid.
 */
char *domxml_build(const struct domxml_spec *spec);

/*
 * Parses the metadata element (as returned by virDomainGetMetadata for
 * DOMXML_METADATA_NS) into a new id string and generation. Returns 0, or -1
 * (logged) if it is malformed or the id is invalid.
 */
int domxml_metadata_parse(const char *xml, char **idp, uint64_t *genp);

/*
 * Reads the owner (cluster and agent identity) from the same metadata
 * element. Returns 0 with new strings, or 0 with both NULL when the element
 * carries no owner (written by an agent older than ownership), or -1
 * (logged) when it is malformed or carries only one of the two.
 */
int domxml_metadata_owner(const char *xml, char **clusterp, char **ownerp);

/* 0 if s is a valid cluster id or agent identity, -1 if not. */
int domxml_owner_valid(const char *s);

enum domxml_ownership {
    DOMXML_MINE = 1,    /* names this agent's cluster and identity */
    DOMXML_LEGACY,      /* no owner recorded: treated as this agent's */
    DOMXML_FOREIGN,     /* another cluster's or another agent's */
};

/*
 * The ownership rule. my_cluster/my_owner NULL (an agent without an
 * identity, e.g. boot-once) owns everything, as before ownership existed.
 * A domain without an owner (cluster NULL) is DOMXML_LEGACY and treated as
 * the agent's own, as before; with an owner it is DOMXML_MINE only when
 * both the cluster and the identity are equal to the agent's.
 */
enum domxml_ownership domxml_owner_check(const char *my_cluster,
                                         const char *my_owner,
                                         const char *cluster,
                                         const char *owner);

#endif
