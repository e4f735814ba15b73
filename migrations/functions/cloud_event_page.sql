-- A page of events after p_since (NULL: from the oldest kept), or CL410
-- when events after p_since were pruned. STABLE: the mark and the rows
-- are read in one snapshot, so a prune committing in between cannot make
-- a page skip rows without the 410.
CREATE OR REPLACE FUNCTION cloud_event_page(p_since bigint, p_object text, p_type text,
                                 p_limit integer)
RETURNS TABLE (id bigint, type text, object text, json json, object_id text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    lw bigint;
BEGIN
    IF p_since IS NOT NULL THEN
        SELECT w.low_water INTO lw FROM events_pruned w WHERE w.id = 1;
        IF p_since < lw THEN
            PERFORM cloud_raise('CL410', format('events after %s are no longer kept: '
                'events up to %s were pruned (cluster setting events_retention); '
                'list again without since and watch from there', p_since, lw), 'since');
        END IF;
    END IF;
    RETURN QUERY
        SELECT e.id, e.type, e.object, cloud_event_json(e), e.object_id
          FROM events e
         WHERE e.id > coalesce(p_since, 0)
           AND (p_object IS NULL OR e.object = p_object)
           AND (p_type IS NULL OR e.type = p_type)
         ORDER BY e.id LIMIT p_limit;
END $$;
