"""Batch scoring on Apache Spark with the same verified ONNX model as the runtime CLI.

    python -m housing_runtime.spark.job --input homes.parquet --output preds.parquet     # local[2]
    spark-submit runtime/src/housing_runtime/spark/job.py --input s3a://bucket/homes/ --output s3a://bucket/preds/

One module per job:
- ``job``: the command line and the driver: model check, read, score, all-or-nothing write;
- ``score``: what each task runs (Arrow batches in, the same batches plus a prediction out),
  validating with the runtime's own core (``housing_runtime.validate``);
- ``paths``: local or not, the input's format, the checks that keep the user's files safe, and
  the claim that lets a failed job remove exactly what it made;
- ``failures``: a failed Spark job as one line and an exit code;
- ``environment``: Java and pyspark checks, and the local session's settings.

pyspark is optional (requirements-spark.txt, `make spark-env`): nothing else imports this
package, and the runtime image never ships it. This file imports nothing.
"""
