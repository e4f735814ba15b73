-- NOTIFY is only a wake-up: the listeners re-read the events table. An empty
-- payload lets PostgreSQL fold every notification of one transaction into
-- one (DESIGN.md "Flows": at most one NOTIFY per transaction).
CREATE OR REPLACE FUNCTION cloud_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cloud_events', '');
    RETURN NULL;
END $$;
