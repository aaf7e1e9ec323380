# The tools image: compaction, the drill and expire as container Lambdas (docs/DEPLOY.md).
# Build from the repository root:
#   docker build --platform linux/amd64 --provenance=false -f deploy/tools.Dockerfile -t IMAGE .
# The template sets each function's handler through ImageConfig.Command; CMD is a default.
FROM public.ecr.aws/lambda/python:3.12
WORKDIR /build
COPY pyproject.toml README.md ./
COPY backup_lambda ./backup_lambda
COPY compaction ./compaction
COPY jobs ./jobs
RUN pip install --no-cache-dir . && rm -rf /build
WORKDIR /var/task
CMD ["jobs.ops.scheduled.compaction_handler"]
