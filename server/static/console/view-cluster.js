// The cluster: GET /v1/cluster, the engines and the shards each holds.

import { api } from "./api.js";
import { h, replace, table } from "./dom.js";

function shown(value) {
  return value === null || value === undefined ? "–" : String(value);
}

function shardRow(shard) {
  return h(
    "tr",
    null,
    h("td", null, shard.library),
    h("td", null, shown(shard.tenant)),
    h("td", { class: "num" }, shown(shard.shard)),
    h("td", null, shown(shard.role)),
    h("td", { class: "num" }, shown(shard.sequence)),
    h("td", { class: shard.in_sync ? "ok" : "bad" }, shard.in_sync ? "in sync" : "behind"),
  );
}

function engineCard(engine) {
  const shards = engine.shards || [];
  const down = engine.up === false;
  const facts = [`node ${shown(engine.node)}`, `device ${shown(engine.device)}`];
  if (engine.address) facts.push(`address ${engine.address}`);
  if (engine.pid !== undefined && engine.pid !== null) facts.push(`pid ${engine.pid}`);
  if (engine.cores !== undefined && engine.cores !== null) facts.push(`cores ${Array.isArray(engine.cores) ? engine.cores.length : engine.cores}`);
  return h(
    "section",
    { class: down ? "card engine down" : "card engine", dataset: { engine: engine.name } },
    h("h2", null, engine.name, " ", h("span", { class: down ? "bad" : "ok" }, down ? "down" : "up")),
    h("p", { class: "muted" }, facts.join(" · ")),
    shards.length
      ? table(["Library", "Tenant", "Shard", "Role", "Sequence", "Replica"], shards.map(shardRow))
      : h("p", { class: "muted" }, "No shards listed."),
  );
}

export async function renderCluster(root) {
  let cluster;
  try {
    cluster = await api.cluster();
  } catch (error) {
    if (error.status !== 404) throw error;
    replace(
      root,
      h("h1", null, "Cluster"),
      h("p", { id: "no-cluster", class: "card" }, "This server runs without a cluster: GET /v1/cluster answered 404."),
    );
    return;
  }
  const engines = cluster.engines || [];
  const up = engines.filter((engine) => engine.up !== false).length;
  replace(
    root,
    h("h1", null, "Cluster"),
    h("p", { class: "muted", id: "cluster-summary" }, `${engines.length} engine${engines.length === 1 ? "" : "s"}, ${up} up`),
    cluster.catalog && cluster.catalog !== "ok"
      ? h("p", { class: "error", id: "cluster-catalog" }, `catalog ${cluster.catalog}: the shards listed are those this server has used`)
      : null,
    h("div", { id: "cluster-engines" }, engines.map(engineCard)),
  );
}
