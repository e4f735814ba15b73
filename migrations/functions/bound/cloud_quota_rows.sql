-- Keeps quota_usage current for the kind TG_ARGV[0] (rows; for instances
-- the live one-off ones, for tokens the unrevoked ones, for blob_bytes
-- their size); an increase past the quota is refused (cloud_quota_take).
CREATE OR REPLACE FUNCTION cloud_quota_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    kind text := TG_ARGV[0];
    d bigint := 0;
BEGIN
    IF kind = 'blob_bytes' THEN
        d := CASE TG_OP WHEN 'INSERT' THEN NEW.size WHEN 'DELETE' THEN -OLD.size
                        ELSE NEW.size - OLD.size END;
    ELSIF kind = 'instances' THEN
        d := CASE WHEN TG_OP <> 'DELETE' AND NEW.service_id IS NULL
                       AND NEW.desired_state <> 'deleted' THEN 1 ELSE 0 END
           - CASE WHEN TG_OP <> 'INSERT' AND OLD.service_id IS NULL
                       AND OLD.desired_state <> 'deleted' THEN 1 ELSE 0 END;
    ELSIF kind = 'tokens' THEN
        d := CASE WHEN TG_OP <> 'DELETE' AND NEW.revoked_at IS NULL THEN 1 ELSE 0 END
           - CASE WHEN TG_OP <> 'INSERT' AND OLD.revoked_at IS NULL THEN 1 ELSE 0 END;
    ELSE
        d := CASE TG_OP WHEN 'INSERT' THEN 1 WHEN 'DELETE' THEN -1 ELSE 0 END;
    END IF;
    IF d <> 0 THEN
        PERFORM cloud_quota_take(kind, d);
    END IF;
    RETURN NULL;
END $$;
