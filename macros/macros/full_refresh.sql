{#- True on `mlsm build --full-refresh`, which sets MLSM_FULL_REFRESH=1 for its dbt run (or
    when dbt runs alone with --vars '{"mlsm_full_refresh": true}'). The variable is read only
    while a node runs, as `run_id` is: a --vars flag that differs from the last run's makes
    dbt re-parse the whole project, so a var would cost a full refresh and the build after it
    a parse each (3-4 s at the demo's size). -#}
{% macro full_refresh() -%}
    {{ return(var('mlsm_full_refresh', false) or (execute and env_var('MLSM_FULL_REFRESH', '') == '1')) }}
{%- endmacro %}
