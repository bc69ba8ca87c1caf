"""Reads a parquet file with pyarrow and prints its column names, types and rows as JSON.

Usage: parquet_reference.py FILE
"""
import json
import sys

import pyarrow.parquet as pq


def main():
    table = pq.read_table(sys.argv[1])
    json.dump(
        {
            "columns": table.column_names,
            "types": [str(t) for t in table.schema.types],
            "rows": table.to_pylist(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
