"""Milvus backend for the VectorIndex interface (pymilvus ``MilvusClient``).

The URI picks the deployment:

* a local path ending in ``.db``: milvus-lite, embedded in this process (pymilvus starts its
  gRPC server on 127.0.0.1 at a free port, in threads; the ``.db`` path becomes a data
  *folder*, locked by one process at a time);
* ``http(s)://host:19530``: a Milvus standalone or cluster; a token is passed as ``token=``
  or in the URI (``https://user:password@host:19530``).

Choices:

* Schema: int64 primary key ``id`` (``auto_id`` off: the face id is the key) and a ``vector``
  FLOAT_VECTOR field, metric L2. Writes are upserts in batches of ``BATCH`` rows, so adding
  an id again replaces its row instead of duplicating it (plain Milvus inserts do not
  enforce primary-key uniqueness).
* Index: FLAT (exact) for milvus-lite, which serves one machine's worth of faces; HNSW
  (M=16, efConstruction=200) for a Milvus server. Either can be forced with ``index_type``
  when the collection is created; an existing collection keeps its own index.
* Search asks Milvus for a pool of ``max(4k, 50)`` candidates (HNSW with
  ``ef = max(pool, EF_MIN)``), then **re-ranks them exactly** against the stored float
  vectors returned with the hits. Distances are thus exact Euclidean ones as in FaissIndex,
  whatever convention the engine reports (Milvus servers give *squared* L2; nothing here
  relies on it); with HNSW the only approximation left is whether a true neighbour made it
  into the pool.
* Consistency: the collection is created with, and every read asks for, level Strong, so
  deletes and upserts are seen by the next search, query and count.
* ``__len__`` is a ``count(*)`` query (collection statistics still count deleted rows);
  ``remove`` looks ids up before deleting them, as Milvus deletes do not say how many
  existed; ``ids()`` walks a query iterator on a server, and is one query in milvus-lite
  (whose iterator rescans the data for every batch); ``save()`` flushes (seals segments and
  builds their index; Milvus logs writes durably before that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from .base import VectorIndex

STRONG = "Strong"
BATCH = 1000  # rows per upsert and ids per lookup: ~0.5 MB of 128-d vectors per request
QUERY_BATCH = 64  # query vectors per search request (each brings back pool x dim floats)
MAX_LIMIT = 16384  # Milvus' cap on a search's topk and on a query's limit
EF_MIN = 256  # HNSW search breadth: recall@10 ~0.999 on 3,000 random 128-d vectors


class MilvusIndex(VectorIndex):
    kind = "milvus"

    def __init__(
        self,
        uri: str,
        collection: str = "faces",
        dim: int = 128,
        *,
        token: str = "",
        index_type: str | None = None,
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self._local = local = uri.endswith(".db")
        if local:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(uri=uri, token=token)
        except MilvusException as error:
            if local:  # milvus-lite locks its data folder: one process at a time
                raise RuntimeError(f"cannot open {uri} (is another process using it?)") from error
            raise
        if self._client.has_collection(collection):
            held = self._stored_dim()
            if held != dim:
                raise ValueError(f"Milvus collection {collection!r} holds {held}-d vectors, expected {dim}")
            self.index_type = str(self._client.describe_index(collection, "vector")["index_type"])
            self._client.load_collection(collection)
        else:
            self.index_type = index_type or ("FLAT" if local else "HNSW")
            self._create()

    def _create(self) -> None:
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params: dict[str, Any] = {}
        if self.index_type.startswith("HNSW"):
            params = {"M": 16, "efConstruction": 200}
        elif self.index_type.startswith("IVF"):
            params = {"nlist": 1024}
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=self.index_type, metric_type="L2", params=params)
        self._client.create_collection(self.collection, schema=schema, consistency_level=STRONG)
        # sync=False: the collection is empty, so there is nothing to wait for (and milvus-lite
        # lacks the AllocTimestamp call that waiting makes, which logs a server-side error).
        self._client.create_index(self.collection, index_params, sync=False)
        self._client.load_collection(self.collection)

    def _stored_dim(self) -> int:
        for field in self._client.describe_collection(self.collection)["fields"]:
            if field["name"] == "vector":
                return int(field["params"]["dim"])
        raise ValueError(f"Milvus collection {self.collection!r} has no 'vector' field")

    def _search_params(self, pool: int) -> dict[str, Any]:
        if self.index_type.startswith("HNSW"):
            return {"ef": max(pool, EF_MIN)}
        if self.index_type.startswith("IVF"):
            return {"nprobe": 64}
        return {}

    def __len__(self) -> int:
        rows = self._client.query(
            self.collection, filter="", output_fields=["count(*)"], consistency_level=STRONG
        )
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        if self._local:  # one unbounded query: milvus-lite would rescan everything per iterator batch
            rows = self._client.query(
                self.collection, filter="", output_fields=["id"], consistency_level=STRONG
            )
            return np.fromiter((row["id"] for row in rows), np.int64, len(rows))
        iterator = self._client.query_iterator(
            self.collection, batch_size=MAX_LIMIT, filter="", output_fields=["id"], consistency_level=STRONG
        )
        chunks: list[np.ndarray] = []
        try:
            while batch := iterator.next():
                chunks.append(np.fromiter((row["id"] for row in batch), np.int64, len(batch)))
        finally:
            iterator.close()
        return np.concatenate(chunks) if chunks else np.empty(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        for start in range(0, len(ids), BATCH):
            stop = start + BATCH
            rows = [{"id": int(i), "vector": v} for i, v in zip(ids[start:stop], vectors[start:stop])]
            self._client.upsert(self.collection, rows)

    def remove(self, ids: np.ndarray) -> int:
        present = 0
        unique = np.unique(np.asarray(ids, dtype=np.int64))
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH].tolist()
            rows = self._client.query(
                self.collection, filter=f"id in {chunk}", output_fields=["id"], consistency_level=STRONG
            )
            held = [int(row["id"]) for row in rows]
            if held:
                self._client.delete(self.collection, ids=held)
                present += len(held)
        return present

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        n, k = len(queries), max(int(k), 0)
        distances = np.full((n, k), np.inf, np.float32)
        found = np.full((n, k), -1, np.int64)
        if k == 0 or n == 0:
            return distances, found
        pool = min(max(4 * k, 50), MAX_LIMIT)
        for start in range(0, n, QUERY_BATCH):
            block = queries[start : start + QUERY_BATCH]
            results = self._client.search(
                self.collection,
                data=list(block),
                limit=pool,
                anns_field="vector",
                output_fields=["vector"],
                search_params={"metric_type": "L2", "params": self._search_params(pool)},
                consistency_level=STRONG,
            )
            for row, (query, hits) in enumerate(zip(block, results), start):
                if not len(hits):
                    continue
                hit_ids = np.fromiter((hit["id"] for hit in hits), np.int64, len(hits))
                stored = np.asarray([hit["entity"]["vector"] for hit in hits], dtype=np.float64)
                exact = np.sqrt(((stored - query.astype(np.float64)) ** 2).sum(axis=1))
                best = np.lexsort((hit_ids, exact))[:k]  # by distance, ties by id
                distances[row, : len(best)] = exact[best]
                found[row, : len(best)] = hit_ids[best]
        return distances, found

    def save(self) -> None:
        self._client.flush(self.collection)

    def reset(self) -> None:
        """Drop every vector (the collection is dropped and made again), e.g. for a rebuild."""
        self._client.drop_collection(self.collection)
        self._create()

    def close(self) -> None:
        """Close the connection (an embedded milvus-lite engine stops at process exit)."""
        self._client.close()

    def status(self) -> dict[str, Any]:
        """Milvus builds and holds its own index: no training here, memory not measurable from here;
        files only for milvus-lite (its data folder)."""
        files: dict[str, int] = {}
        if self._local:
            path = Path(self.uri)
            found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
            files = {str(p.relative_to(path.parent)): p.stat().st_size for p in found}
        return {
            "training": "exact" if self.index_type == "FLAT" else f"built by Milvus ({self.index_type})",
            "needs_training": False,
            "index_type": self.index_type,
            "memory_bytes": None,  # held by Milvus, not measurable from here
            "bytes_per_face": None,
            "files": files,
            "disk_bytes": sum(files.values()),
        }
