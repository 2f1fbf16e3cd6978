{#- The run id mlsm passes in MLSM_RUN_ID (one id from dbt build to the publication log), or
    when dbt runs alone `default`, else dbt's own invocation id. Read only when a node runs,
    never while dbt parses: dbt re-parses the whole project when --vars change, and a file
    when an env_var() it read at parse time changes, so a new id every run would cost every
    build a parse (2-5 s). -#}
{% macro run_id(default=none) -%}
    {%- set given = env_var('MLSM_RUN_ID', '') if execute else '' -%}
    {{ return(given or (default if default is not none else invocation_id)) }}
{%- endmacro %}
