-- The batch's dispatcher: one API write by its name, a its arguments
-- (instance_kill's fifth: the kill's grace in seconds, JSON null when not
-- given).
CREATE OR REPLACE FUNCTION cloud_batch_one(op text, a jsonb, OUT st integer, OUT bd json)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    CASE op
    WHEN 'service_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'service_patch' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_patch(a->>0, (a->>1)::jsonb, (a->>2)::bigint, a->>3) f;
    WHEN 'service_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_service_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_create((a->>0)::jsonb, a->>1, a->>2) f;
    WHEN 'instance_kill' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_kill(a->>0, a->>1, (a->>2)::bigint, a->>3,
                                   (a->>4)::integer) f;
    WHEN 'instance_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_delete(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_start' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_start(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'instance_restart' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_instance_restart(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'host_action' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_host_action(a->>0, a->>1, (a->>2)::bigint, a->>3) f;
    WHEN 'blob_add' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_blob_add(a->>0, (a->>1)::bigint, a->>2) f;
    WHEN 'image_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_create((a->>0)::jsonb, a->>1) f;
    WHEN 'image_delete' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_image_delete(a->>0, a->>1) f;
    WHEN 'token_create' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_create(a->>0, a->>1, a->>2, (a->>3)::bigint, a->>4) f;
    WHEN 'token_revoke' THEN
        SELECT f.status, f.body INTO st, bd
          FROM cloud_token_revoke(a->>0, a->>1) f;
    ELSE
        PERFORM cloud_raise('CL422', format('unknown batch operation %s', op));
    END CASE;
END $$;
