-- Deletes up to p_batch of the oldest events that are older than
-- max_age_seconds or not among the newest max_events, as one contiguous
-- prefix by id (so everything above the mark is kept), never the newest
-- event (so a reader that gets no rows after its position knows nothing
-- above it was pruned). deleted = p_batch: call again.
CREATE OR REPLACE FUNCTION cloud_events_prune(p_batch integer, OUT deleted integer,
                                   OUT low_water bigint)
LANGUAGE plpgsql AS $$
DECLARE
    st cluster_settings;
    top bigint;
    cut bigint;
BEGIN
    deleted := 0;
    SELECT * INTO st FROM cluster_settings WHERE id = 1;
    SELECT w.low_water INTO low_water FROM events_pruned w WHERE w.id = 1;
    SELECT max(id) INTO top FROM events;
    IF top IS NULL THEN
        RETURN;
    END IF;
    -- The common case, every 2 s: the oldest event is to be kept, so
    -- nothing is (one index probe instead of reading a batch).
    IF NOT EXISTS (SELECT 1 FROM (SELECT e.id, e.time FROM events e ORDER BY e.id LIMIT 1) f
                    WHERE f.id < top
                      AND (f.time < now() - make_interval(secs => st.events_max_age_seconds)
                           OR f.id <= top - st.events_max_events)) THEN
        RETURN;
    END IF;
    WITH c AS (SELECT e.id, (e.time < now() - make_interval(secs => st.events_max_age_seconds)
                             OR e.id <= top - st.events_max_events) AS old
                 FROM events e ORDER BY e.id LIMIT p_batch),
         y AS (SELECT min(c.id) AS id FROM c WHERE NOT c.old)
    SELECT max(c.id) INTO cut FROM c, y
     WHERE c.old AND (y.id IS NULL OR c.id < y.id) AND c.id < top;
    IF cut IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM events WHERE id <= cut;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    UPDATE events_pruned w SET low_water = greatest(w.low_water, cut), pruned_at = now()
     WHERE w.id = 1 RETURNING w.low_water INTO low_water;
END $$;
