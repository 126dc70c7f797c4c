-- Declarative HTTP suppliers, one per tenant and name. The definition is its stream
-- (`http_supplier-{tenant}.{name}`); this index, written in the transaction that appends to
-- it, lists the definitions with their stream versions, so every process notices a change by
-- reading one small table.
CREATE TABLE http_suppliers (
    stream_id TEXT   PRIMARY KEY,
    tenant_id TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    version   BIGINT NOT NULL
);
CREATE INDEX http_suppliers_by_tenant ON http_suppliers (tenant_id, name);
