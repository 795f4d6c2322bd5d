// The cluster: GET /v1/cluster, the engines and the shards each holds.

import { api } from "./api.js";
import { h, replace, table } from "./dom.js";

function shardRow(shard) {
  return h(
    "tr",
    null,
    h("td", null, shard.library),
    h("td", { class: "num" }, shard.shard),
    h("td", null, shard.role),
    h("td", { class: "num" }, shard.sequence),
    h("td", { class: shard.in_sync ? "ok" : "bad" }, shard.in_sync ? "in sync" : "behind"),
  );
}

function engineCard(engine) {
  const shards = engine.shards || [];
  return h(
    "section",
    { class: "card engine", dataset: { engine: engine.name } },
    h("h2", null, engine.name),
    h("p", { class: "muted" }, `node ${engine.node} · device ${engine.device}`),
    shards.length
      ? table(["Library", "Shard", "Role", "Sequence", "Replica"], shards.map(shardRow))
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
  replace(
    root,
    h("h1", null, "Cluster"),
    h("p", { class: "muted", id: "cluster-summary" }, `${engines.length} engine${engines.length === 1 ? "" : "s"}`),
    h("div", { id: "cluster-engines" }, engines.map(engineCard)),
  );
}
