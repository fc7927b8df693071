# Small, non-root image: dependencies are built in a throwaway stage, the final layer
# holds only the virtualenv and the code (no compilers, no pip cache).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md constraints.txt ./
COPY bot ./bot
# constraints.txt pins every dependency to the versions the tests and the benchmark ran with.
RUN /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --home-dir /app --shell /usr/sbin/nologin bot \
    && mkdir -p /app/data && chown bot:bot /app/data && chmod 700 /app/data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER bot:bot
VOLUME ["/app/data"]
EXPOSE 8080
ENTRYPOINT ["balance-bot"]
CMD ["run"]
