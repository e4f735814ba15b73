-- The host network (issue 15, docs/network.md): the underlay IPv4 address
-- a host's agent gave in its Hello (Hello.underlay_address, sent by an
-- agent that builds the host network); '' for an agent that does not, and
-- such a host is no overlay peer of the others.
ALTER TABLE hosts
    ADD COLUMN underlay_address text DEFAULT '' NOT NULL,
    ADD CONSTRAINT hosts_underlay_address_check CHECK (length(underlay_address) <= 64);
