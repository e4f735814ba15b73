/*
 * virt_priv: internals of the libvirt backend (virt.c) that its unit tests
 * reach. Not part of the driver API; the agent includes virt.h only.
 */
#ifndef CLOUD_AGENT_VIRT_PRIV_H
#define CLOUD_AGENT_VIRT_PRIV_H

#include <stdint.h>

/*
 * The XML of the agent's dir storage pool called name over dir, and of an
 * instance's qcow2 overlay volume called name, of capacity bytes, over the
 * image backing (in format backing_fmt, e.g. "qcow2" or "raw"). Built with
 * libxml2, so every value is escaped; a new string, or NULL if libxml2
 * cannot write the document.
 */
char *virt_pool_xml(const char *name, const char *dir);
char *virt_volume_xml(const char *name, uint64_t capacity, const char *backing,
                      const char *backing_fmt);

#endif
