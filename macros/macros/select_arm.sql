{#- One row per record for a split summary model: the record's arm by md5_bucket(salt:key)
    against each arm's exclusive upper bucket, and that arm's live champion score (NULL when
    it has no valid score), with its percentile. `arms` is [[model, upper bucket], ...] in order. -#}
{% macro select_arm(scores, key, summary_model, arms, salt) -%}
    {{ return(adapter.dispatch('select_arm', 'mlsm')(scores, key, summary_model, arms, salt)) }}
{%- endmacro %}

{% macro default__select_arm(scores, key, summary_model, arms, salt) -%}
{%- if arms | length < 2 -%}
    {{ exceptions.raise_compiler_error("select_arm: summary model '" ~ summary_model ~ "' needs two arms") }}
{%- endif -%}
with

scores as (

    select * from {{ scores }}

),

records as (

    select distinct {{ key }} from scores

),

assigned as (

    select
        {{ key }},
        case
            {%- for name, upper in arms %}
            when {{ mlsm.md5_bucket("'" ~ salt ~ ":' || cast(" ~ key ~ " as " ~ dbt.type_string() ~ ")") }} < {{ upper }} then '{{ name }}'
            {%- endfor %}
        end as arm

    from records

),

champions as (

    select * from scores
    where model_status = 'live'
        and role = 'champion'
        and {{ mlsm.is_valid_score('score') }}

),

final as (

    select
        assigned.{{ key }},
        '{{ summary_model }}' as summary_model,
        champions.model_name as winning_model,
        champions.model_version as winning_version,
        champions.fit_id as winning_fit_id,
        champions.score,
        champions.percentile,
        champions.decile,
        assigned.arm

    from assigned
    left join champions
        on champions.{{ key }} = assigned.{{ key }}
        and champions.model_name = assigned.arm

)

select * from final
{%- endmacro %}
